//! A large document cut into small ones: the text before its first repeated item
//! (the head: prolog, root start tag, whatever precedes the items), about
//! [`CHUNK_BYTES`] of items (and whatever lies between them), and the text after the
//! last item (the tail: totals, the signature, the root end tag), parsed on their
//! own, one at a time. Every byte of the document is in exactly one chunk's body or
//! in the head and tail every chunk repeats, so a document is well-formed and valid
//! exactly when each chunk is: the schemas have no constraint across items (no
//! `xs:unique`/`xs:key`, no upper bound on the items), and the rules carry what they
//! need from item to item ([`super::rules`]). Memory is that of one chunk's tree.

use std::ops::{ControlFlow, Range};

use quick_xml::events::Event;
use uppsala::{Document, Parser};

use crate::xml::Stop;
use crate::xml::cancel::{Cancel, Cancelled};
use crate::xml::source::{Reader, Source};

/// Bytes of items per chunk.
pub(super) const CHUNK_BYTES: usize = 64 * 1024;

/// One chunk, parsed.
pub(super) struct Chunk<'d, 'a> {
    pub doc: &'d Document<'a>,
    /// Where the chunk's own items (and what lies between them) are in its text.
    pub body: Range<usize>,
    /// Items in the chunks before this one.
    pub items_before: usize,
    pub first: bool,
    pub last: bool,
}

/// The most bytes one item may take in a large document: a chunk holds at least one
/// item, so this bounds a chunk's tree and the work between two checks of the
/// cancellation flag. Real items (one employee's line, one period) take about a
/// kilobyte.
pub const MAX_ITEM_BYTES: usize = CHUNK_BYTES;

/// Why a document cannot be cut into chunks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Uncut {
    /// Fewer than two items at the document element's level.
    TooFewItems(usize),
    /// The `index`th item (1-based) takes `bytes`, more than [`MAX_ITEM_BYTES`].
    ItemTooLarge { index: usize, bytes: usize },
    /// What precedes the first item and follows the last takes `bytes`, more than
    /// [`CHUNK_BYTES`] (every chunk repeats it).
    EnvelopeTooLarge(usize),
    /// Not well-formed where the cut is looked for.
    Malformed,
}

impl std::fmt::Display for Uncut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::TooFewItems(n) => write!(f, "it has {n} item(s), at least 2 are needed"),
            Self::ItemTooLarge { index, bytes } => write!(
                f,
                "item {index} takes {bytes} bytes, more than the {MAX_ITEM_BYTES} an item may take"
            ),
            Self::EnvelopeTooLarge(bytes) => write!(
                f,
                "what precedes the first item and follows the last takes {bytes} bytes, more than {CHUNK_BYTES}"
            ),
            Self::Malformed => f.write_str("it is not well-formed"),
        }
    }
}

/// The byte ranges of the document element's children named `item` (local name),
/// in order; refused (with the reason) if the document has fewer than two, an item
/// larger than [`MAX_ITEM_BYTES`], a head and tail larger than a chunk, or is not
/// well-formed.
pub(super) fn split(
    src: Source<'_>,
    item: &str,
    cancel: &Cancel,
) -> Result<Result<Vec<Range<usize>>, Uncut>, Stop> {
    match items(src, item, cancel) {
        Ok(items) => Ok(Ok(items)),
        Err(Stopped::Uncut(why)) => Ok(Err(why)),
        Err(Stopped::Cancelled(_)) => Err(Stop::Cancelled),
        Err(Stopped::Failed(stop)) => Err(stop),
    }
}

enum Stopped {
    Uncut(Uncut),
    Cancelled(Cancelled),
    /// Reading the staged document failed.
    Failed(Stop),
}

impl From<Uncut> for Stopped {
    fn from(why: Uncut) -> Self {
        Self::Uncut(why)
    }
}

impl From<Cancelled> for Stopped {
    fn from(c: Cancelled) -> Self {
        Self::Cancelled(c)
    }
}

fn items(src: Source<'_>, item: &str, cancel: &Cancel) -> Result<Vec<Range<usize>>, Stopped> {
    let mut reader = quick_xml::Reader::from_reader(src.reader());
    let mut buf = Vec::new();
    let mut events = 0u32;
    let mut depth = 0usize;
    let mut items = Vec::new();
    let mut open: Option<usize> = None;
    let position = |reader: &quick_xml::Reader<Reader<'_>>| {
        usize::try_from(reader.buffer_position()).map_err(|_| Uncut::Malformed)
    };
    loop {
        events = events.wrapping_add(1);
        if events.is_multiple_of(4096) {
            cancel.check()?;
        }
        buf.clear();
        let start = position(&reader)?;
        let event = match reader.read_event_into(&mut buf) {
            Ok(event) => event,
            Err(e) => {
                return Err(crate::xml::failed_read(&e)
                    .map_or(Stopped::Uncut(Uncut::Malformed), Stopped::Failed));
            }
        };
        let end = position(&reader)?;
        let mut closed = None;
        match event {
            Event::Start(e) => {
                depth += 1;
                if depth == 2 && e.local_name().as_ref() == item.as_bytes() {
                    open = Some(start);
                }
            }
            Event::Empty(e) if depth == 1 && e.local_name().as_ref() == item.as_bytes() => {
                closed = Some(start..end);
            }
            Event::End(_) => {
                if depth == 2 {
                    closed = open.take().map(|s| s..end);
                }
                depth = depth.checked_sub(1).ok_or(Uncut::Malformed)?;
            }
            Event::Eof => break,
            _ => {}
        }
        if let Some(range) = closed {
            if range.len() > MAX_ITEM_BYTES {
                return Err(Uncut::ItemTooLarge {
                    index: items.len() + 1,
                    bytes: range.len(),
                }
                .into());
            }
            items.push(range);
        }
    }
    let (Some(first), Some(last)) = (items.first(), items.last()) else {
        return Err(Uncut::TooFewItems(0).into());
    };
    let envelope = first.start + (src.len() - last.end);
    if items.len() < 2 {
        return Err(Uncut::TooFewItems(items.len()).into());
    }
    if envelope > CHUNK_BYTES {
        return Err(Uncut::EnvelopeTooLarge(envelope).into());
    }
    Ok(items)
}

/// Parses each chunk of `text` (cut at `items`, from [`split`]) and hands it to `f`,
/// until `f` breaks. A chunk that does not parse is refused as the whole document
/// would be, at the line and column of the whole document.
pub(super) fn for_each<B>(
    src: Source<'_>,
    items: &[Range<usize>],
    mut f: impl FnMut(Chunk<'_, '_>) -> ControlFlow<B>,
) -> Result<Option<B>, Stop> {
    let (Some(first), Some(last)) = (items.first(), items.last()) else {
        return Ok(None);
    };
    // Each at most a chunk ([`split`] refuses a larger envelope).
    let head = src.text(0..first.start)?;
    let tail = src.text(last.end..src.len())?;
    let parser = Parser::new()
        .with_forbid_dtd(true)
        .with_forbid_entities(true)
        .with_max_depth(10_000);
    let mut start = 0usize;
    while start < items.len() {
        let mut end = start + 1;
        while end < items.len() && items[end].end.saturating_sub(items[start].start) <= CHUNK_BYTES
        {
            end += 1;
        }
        // Up to where the next chunk begins, so that whatever lies between two items
        // (misplaced elements, text) is in exactly one chunk.
        let body_end = items.get(end).map_or(last.end, |next| next.start);
        let body_start = items[start].start;
        let body = src.text(body_start..body_end)?;
        let mut chunk_text = String::with_capacity(head.len() + body.len() + tail.len());
        chunk_text.push_str(&head);
        chunk_text.push_str(&body);
        chunk_text.push_str(&tail);
        let parsed = parser.parse(&chunk_text);
        let doc = match parsed {
            Ok(doc) => doc,
            Err(e) => {
                let (_, line, column) = crate::xml::described(&e);
                // Back to the whole document: the byte of the chunk, then its line.
                let at = offset_of(&chunk_text, line, column);
                let original = if at < head.len() {
                    at
                } else if at < head.len() + body.len() {
                    body_start + (at - head.len())
                } else {
                    last.end + (at - head.len() - body.len())
                };
                let (line, column) = src.line_col(original)?;
                let mut refusal = crate::xml::refusal_for(&e, &Default::default());
                refusal.location = format!("line {line}, column {column}");
                return Err(refusal.into());
            }
        };
        let chunk = Chunk {
            doc: &doc,
            body: head.len()..head.len() + body.len(),
            items_before: start,
            first: start == 0,
            last: end == items.len(),
        };
        if let ControlFlow::Break(b) = f(chunk) {
            return Ok(Some(b));
        }
        start = end;
    }
    Ok(None)
}

/// The byte offset of a 1-based line and (byte) column.
fn offset_of(text: &str, line: usize, column: usize) -> usize {
    let line_start = if line <= 1 {
        0
    } else {
        text.bytes()
            .enumerate()
            .filter(|(_, b)| *b == b'\n')
            .nth(line - 2)
            .map_or(text.len(), |(i, _)| i + 1)
    };
    (line_start + column.saturating_sub(1)).min(text.len())
}
