//! Shape bombs refused while the body is still arriving ([`EarlyScan`]).
//!
//! The pre-scan ([`crate::xml::prescan`]) needs the whole body, and a 50 MiB
//! attribute bomb takes longer to upload than to refuse. This scanner looks at the
//! first [`EARLY_BYTES`] of a body as its frames arrive and refuses, with the
//! pre-scan's own code, message and location, an element that already has more
//! attributes or namespace declarations than one element may have, or is nested
//! deeper than allowed. Counts only grow as more of the document arrives, so such a
//! prefix is refused by the pre-scan too. It is deliberately small and conservative:
//! it follows text, start and end tags, comments, CDATA sections and processing
//! instructions, and gives up (leaving the document to the pre-scan) at anything
//! else — a DOCTYPE, bytes that are not UTF-8, an encoding other than UTF-8.

use crate::xml::Limits;
use crate::xml::Refusal;

/// How much of a body is scanned as it arrives.
pub const EARLY_BYTES: usize = 1024 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Text,
    /// Just after `<`.
    Open,
    /// After `<!`: how much of `--` (0, 1) or of `[CDATA[` (10 + how much) has been
    /// seen.
    Bang(usize),
    Comment,
    CData,
    Pi,
    EndTag,
    /// Inside a start tag.
    Tag,
    Done,
}

/// The scanner's state between frames.
#[derive(Debug)]
pub struct EarlyScan {
    limits: Limits,
    state: State,
    /// Bytes seen so far; where the current line starts; its number.
    seen: usize,
    line: usize,
    line_start: usize,
    /// Open elements.
    depth: u32,
    /// The current start tag: where it starts (line, column), its attributes and
    /// namespace declarations so far, the quote it is inside, and the start of the
    /// current token (up to 6 bytes, enough to tell `xmlns` / `xmlns:`).
    at: (usize, usize),
    attributes: u32,
    declarations: u32,
    quote: Option<u8>,
    token: [u8; 6],
    token_len: usize,
    token_open: bool,
    last: u8,
    /// Closing delimiter progress for comments, CDATA and PIs.
    closing: usize,
}

impl EarlyScan {
    pub fn new(limits: Limits) -> Self {
        Self {
            limits,
            state: State::Text,
            seen: 0,
            line: 1,
            line_start: 0,
            depth: 0,
            at: (0, 0),
            attributes: 0,
            declarations: 0,
            quote: None,
            token: [0; 6],
            token_len: 0,
            token_open: false,
            last: 0,
            closing: 0,
        }
    }

    /// Whether it has stopped looking (scanned enough, or gave up).
    pub fn done(&self) -> bool {
        self.state == State::Done
    }

    /// Looks at the next bytes of the body; `Err` with the pre-scan's refusal when
    /// an element is already over a limit.
    pub fn feed(&mut self, bytes: &[u8]) -> Result<(), Refusal> {
        if self.done() {
            return Ok(());
        }
        let room = EARLY_BYTES.saturating_sub(self.seen).min(bytes.len());
        let bytes = &bytes[..room];
        // A frame may split a character: then give up rather than guess.
        if std::str::from_utf8(bytes).is_err() || (self.seen == 0 && !utf8_declared(bytes)) {
            self.state = State::Done;
            return Ok(());
        }
        for &b in bytes {
            self.step(b)?;
            if self.state == State::Done {
                return Ok(());
            }
            if b == b'\n' {
                self.line += 1;
                self.line_start = self.seen + 1;
            }
            self.seen += 1;
            self.last = b;
        }
        if self.seen >= EARLY_BYTES {
            self.state = State::Done;
        }
        Ok(())
    }

    fn step(&mut self, b: u8) -> Result<(), Refusal> {
        match self.state {
            State::Text => {
                if b == b'<' {
                    self.at = (self.line, self.seen - self.line_start + 1);
                    self.state = State::Open;
                }
            }
            State::Open => match b {
                b'/' => self.state = State::EndTag,
                b'?' => {
                    self.state = State::Pi;
                    self.closing = 0;
                }
                b'!' => self.state = State::Bang(0),
                _ => {
                    self.state = State::Tag;
                    self.depth += 1;
                    if self.depth > self.limits.max_depth {
                        return Err(self.refusal(
                            "xml.too-deep",
                            format!(
                                "elements are nested deeper than {} levels",
                                self.limits.max_depth
                            ),
                        ));
                    }
                    self.attributes = 0;
                    self.declarations = 0;
                    self.quote = None;
                    self.token_len = 0;
                    self.token_open = true;
                    self.push_token(b);
                }
            },
            // After `<!`: `--` opens a comment, `[CDATA[` a CDATA section.
            State::Bang(n) => {
                const COMMENT: &[u8] = b"--";
                const CDATA: &[u8] = b"[CDATA[";
                let (pattern, offset) = if n < 10 { (COMMENT, 0) } else { (CDATA, 10) };
                let k = n - offset;
                self.state = if n == 0 && b == b'[' {
                    State::Bang(11)
                } else if pattern.get(k) == Some(&b) {
                    if k + 1 == pattern.len() {
                        self.closing = 0;
                        if offset == 0 {
                            State::Comment
                        } else {
                            State::CData
                        }
                    } else {
                        State::Bang(n + 1)
                    }
                } else {
                    // A DOCTYPE or something stranger: the pre-scan decides.
                    State::Done
                };
            }
            State::Comment => self.close_on(b, b"-->"),
            State::CData => self.close_on(b, b"]]>"),
            State::Pi => self.close_on(b, b"?>"),
            State::EndTag => {
                if b == b'>' {
                    self.depth = self.depth.saturating_sub(1);
                    self.state = State::Text;
                }
            }
            State::Tag => self.tag(b)?,
            State::Done => {}
        }
        Ok(())
    }

    fn close_on(&mut self, b: u8, end: &[u8]) {
        if b == end[self.closing] {
            self.closing += 1;
            if self.closing == end.len() {
                self.state = State::Text;
            }
        } else {
            self.closing = usize::from(b == end[0]);
        }
    }

    fn tag(&mut self, b: u8) -> Result<(), Refusal> {
        if let Some(q) = self.quote {
            if b == q {
                self.quote = None;
            }
            return Ok(());
        }
        match b {
            b'"' | b'\'' => {
                self.quote = Some(b);
                self.token_open = false;
            }
            b'=' => {
                self.token_open = false;
                self.attributes += 1;
                let max = self.limits.max_attributes_per_element;
                if self.attributes > max {
                    return Err(self.refusal(
                        "xml.too-many-attributes",
                        format!("an element has more than {max} attributes"),
                    ));
                }
                let name = &self.token[..self.token_len];
                if name == b"xmlns" || name.starts_with(b"xmlns:") {
                    self.declarations += 1;
                    let max = self.limits.max_namespace_declarations_per_element;
                    if self.declarations > max {
                        return Err(self.refusal(
                            "xml.too-many-namespaces",
                            format!("an element declares more than {max} namespaces"),
                        ));
                    }
                }
            }
            b'>' => {
                if self.last == b'/' {
                    self.depth = self.depth.saturating_sub(1);
                }
                self.state = State::Text;
            }
            b' ' | b'\t' | b'\r' | b'\n' | b'/' => self.token_open = false,
            _ => {
                if !self.token_open {
                    self.token_open = true;
                    self.token_len = 0;
                }
                self.push_token(b);
            }
        }
        Ok(())
    }

    fn push_token(&mut self, b: u8) {
        if self.token_len < self.token.len() {
            self.token[self.token_len] = b;
            self.token_len += 1;
        } else {
            // Longer than `xmlns:`: only its start matters.
        }
    }

    fn refusal(&self, code: &'static str, message: String) -> Refusal {
        let (line, column) = self.at;
        Refusal::new(code, message, format!("line {line}, column {column}"))
    }
}

/// A refusal made while the body was arriving: what was refused, and the SHA-256
/// and length of the bytes received by then (the log records those).
#[derive(Debug, Clone)]
pub struct Early {
    pub refusal: Refusal,
    pub sha256: String,
    pub received: usize,
}

/// Where a [`Watched`] body leaves its refusal for the handler.
pub type Found = std::sync::Arc<std::sync::Mutex<Option<Early>>>;

/// A submission body watched as it arrives: the first [`EARLY_BYTES`] go through an
/// [`EarlyScan`], and a bomb among them ends the read with an error, leaving the
/// refusal in `found` (the handler answers it without waiting for the rest).
pub struct Watched {
    inner: axum::body::Body,
    scan: EarlyScan,
    hasher: sha2::Sha256,
    received: usize,
    found: Found,
}

impl std::fmt::Debug for Watched {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watched")
            .field("received", &self.received)
            .field("scan", &self.scan)
            .finish_non_exhaustive()
    }
}

impl Watched {
    pub fn new(inner: axum::body::Body, limits: Limits, found: Found) -> Self {
        Self {
            inner,
            scan: EarlyScan::new(limits),
            hasher: sha2::Digest::new(),
            received: 0,
            found,
        }
    }
}

impl http_body::Body for Watched {
    type Data = bytes::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        use std::task::Poll;
        let this = &mut *self;
        let frame = match std::pin::Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => frame,
            Poll::Pending => return Poll::Pending,
        };
        if let Some(Ok(f)) = &frame
            && let Some(data) = f.data_ref()
            && !this.scan.done()
        {
            sha2::Digest::update(&mut this.hasher, data);
            this.received += data.len();
            if let Err(refusal) = this.scan.feed(data) {
                let sha256 = hex::encode(sha2::Digest::finalize(this.hasher.clone()));
                if let Ok(mut found) = this.found.lock() {
                    *found = Some(Early {
                        refusal,
                        sha256,
                        received: this.received,
                    });
                }
                return Poll::Ready(Some(Err(axum::Error::new("refused while receiving"))));
            }
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// Whether the start of a body declares no encoding or UTF-8 (the pre-scan refuses
/// any other before it looks at elements). A declaration not yet whole is not
/// guessed at.
fn utf8_declared(start: &[u8]) -> bool {
    let text = String::from_utf8_lossy(&start[..start.len().min(256)]);
    let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
    if text.starts_with("<?xml") && !text.contains("?>") {
        return false;
    }
    crate::xml::declared_encoding(text).is_none_or(crate::xml::is_utf8)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xml::cancel::Cancel;
    use crate::xml::{Stop, parse};

    fn early(doc: &[u8], frame: usize) -> Option<Refusal> {
        let mut scan = EarlyScan::new(Limits {
            max_attributes_per_element: 8,
            max_namespace_declarations_per_element: 2,
            max_depth: 6,
            ..Limits::default()
        });
        for chunk in doc.chunks(frame.max(1)) {
            if let Err(r) = scan.feed(chunk) {
                return Some(r);
            }
        }
        None
    }

    fn prescan(doc: &[u8]) -> Option<Refusal> {
        let limits = Limits {
            max_attributes_per_element: 8,
            max_namespace_declarations_per_element: 2,
            max_depth: 6,
            ..Limits::default()
        };
        match parse(doc, &limits, &Cancel::default()) {
            Err(Stop::Refused(r)) => Some(r),
            _ => None,
        }
    }

    #[test]
    fn bombs_are_refused_as_the_prescan_refuses_them_and_nothing_else_is() {
        let attrs = |n: usize| (0..n).map(|i| format!(" a{i}=\"v\"")).collect::<String>();
        let cases = [
            format!("<r{}/>", attrs(9)),
            format!("<?xml version=\"1.0\"?>\n<r>\n  <e{}>x</e></r>", attrs(20)),
            "<r xmlns:a='1' xmlns:b='2' xmlns:c='3'/>".to_owned(),
            "<a><b><c><d><e><f><g/></f></e></d></c></b></a>".to_owned(),
            // Quotes, `=` and `>` inside values, comments, CDATA and PIs do not count.
            format!(
                "<r a=\"x=y>z\" b='=\"=' c=\"1\"><!-- <x a=1 b=2 c=3 d=4 e=5 f=6 g=7 h=8 i=9> --><![CDATA[<y a=1 b=2 c=3 d=4 e=5 f=6 g=7 h=8 i=9>]]><?pi a=1 b=2 c=3 d=4 e=5 f=6 g=7 h=8 i=9?><e{}/></r>",
                attrs(8)
            ),
            "<r><a/><b/><c/><d/><e/><f/><g/></r>".to_owned(),
            format!("<r>{}</r>", "<a><b><c><d><e/></d></c></b></a>".repeat(3)),
            "<r xmlns='urn:x' xmlns:a='1'><e xmlns:b='2' xmlns:c='3'/></r>".to_owned(),
        ];
        for doc in &cases {
            let want = prescan(doc.as_bytes());
            for frame in [1, 3, 7, 64, 100_000] {
                let got = early(doc.as_bytes(), frame);
                match (&want, &got) {
                    (_, None) => {}
                    (Some(w), Some(g)) => assert_eq!(w, g, "{doc} in frames of {frame}"),
                    (None, Some(g)) => {
                        panic!("{doc} refused early ({g:?}) but not by the pre-scan")
                    }
                }
            }
            // Every bomb among the cases is caught early (in frames that hold the XML
            // declaration whole; it gives up on one split across frames).
            if want.is_some() {
                assert!(early(doc.as_bytes(), 64).is_some(), "{doc}");
            }
        }
    }

    #[test]
    fn real_filings_are_never_refused_early() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../ops/examples");
        let mut seen = 0;
        for sub in ["valid", "invalid"] {
            for entry in std::fs::read_dir(dir.join(sub)).unwrap() {
                let doc = std::fs::read(entry.unwrap().path()).unwrap();
                let mut scan = EarlyScan::new(Limits::default());
                for chunk in doc.chunks(17) {
                    scan.feed(chunk).unwrap();
                }
                seen += 1;
            }
        }
        assert!(seen > 10);
    }

    #[test]
    fn it_gives_up_where_it_cannot_be_sure() {
        for doc in [
            &b"<!DOCTYPE r><r a='1' b='2' c='3' d='4' e='5' f='6' g='7' h='8' i='9'/>"[..],
            b"<?xml version='1.0' encoding='windows-1250'?><r a='1' b='2' c='3' d='4' e='5' f='6' g='7' h='8' i='9'/>",
            b"<r>\xff</r><r a='1' b='2' c='3' d='4' e='5' f='6' g='7' h='8' i='9'/>",
        ] {
            assert_eq!(early(doc, 1000), None, "{}", String::from_utf8_lossy(doc));
        }
    }
}
