//! A document's bytes as the streamed passes read them: in memory, or in the
//! staging file a large body was spooled to as it arrived
//! ([`retention::originals::Staged`]), so that a large document is never held in
//! memory whole.
//!
//! Every streamed pass ([`super::prescan`], [`crate::intake::c14n::scan`],
//! [`crate::documents::Plan::of`], the chunked checks) reads a [`Source`] from the
//! start with a buffer of [`READ_BUFFER_BYTES`], and cuts out small ranges (a start
//! tag, the signature, one chunk of items) with [`Source::read`]. Readers of a file
//! read at their own offsets (`pread`), so passes on two threads share one open file.
//! A read error of the file is the service's failure ([`super::Stop::Failed`]),
//! never the document's.

use std::borrow::Cow;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::ops::Range;
use std::os::unix::fs::FileExt;

/// The buffer each pass reads a file through.
pub const READ_BUFFER_BYTES: usize = 64 * 1024;

/// Where a document's bytes are.
#[derive(Debug, Clone, Copy)]
pub enum Source<'a> {
    Memory(&'a [u8]),
    /// The first `len` bytes of `file`.
    File {
        file: &'a File,
        len: usize,
    },
}

impl<'a> From<&'a [u8]> for Source<'a> {
    fn from(bytes: &'a [u8]) -> Self {
        Source::Memory(bytes)
    }
}

impl<'a> From<&'a str> for Source<'a> {
    fn from(text: &'a str) -> Self {
        Source::Memory(text.as_bytes())
    }
}

impl<'a> From<&'a String> for Source<'a> {
    fn from(text: &'a String) -> Self {
        Source::Memory(text.as_bytes())
    }
}

impl<'a> From<&'a retention::Content> for Source<'a> {
    fn from(content: &'a retention::Content) -> Self {
        match content {
            retention::Content::Memory(bytes) => Source::Memory(bytes),
            retention::Content::Staged(staged) => Source::File {
                file: staged.file(),
                len: usize::try_from(staged.len()).unwrap_or(usize::MAX),
            },
        }
    }
}

impl<'a> Source<'a> {
    pub fn len(&self) -> usize {
        match self {
            Source::Memory(bytes) => bytes.len(),
            Source::File { len, .. } => *len,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A buffered reader of the whole document.
    pub fn reader(&self) -> Reader<'a> {
        match *self {
            Source::Memory(bytes) => Reader::Memory(bytes),
            Source::File { file, len } => Reader::File(BufReader::with_capacity(
                READ_BUFFER_BYTES,
                At {
                    file,
                    pos: 0,
                    end: len as u64,
                },
            )),
        }
    }

    /// The bytes of `range` (cut to the document). Callers bound the range: it is
    /// read into memory whole.
    pub fn read(&self, range: Range<usize>) -> io::Result<Cow<'a, [u8]>> {
        let end = range.end.min(self.len());
        let start = range.start.min(end);
        match *self {
            Source::Memory(bytes) => Ok(Cow::Borrowed(&bytes[start..end])),
            Source::File { file, .. } => {
                let mut out = vec![0; end - start];
                file.read_exact_at(&mut out, start as u64)?;
                Ok(Cow::Owned(out))
            }
        }
    }

    /// [`Source::read`] as text: the passes run on documents checked to be UTF-8,
    /// and cut them at markup (ASCII), so this never replaces anything.
    pub fn text(&self, range: Range<usize>) -> io::Result<Cow<'a, str>> {
        Ok(match self.read(range)? {
            Cow::Borrowed(b) => String::from_utf8_lossy(b),
            Cow::Owned(b) => Cow::Owned(
                String::from_utf8(b)
                    .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()),
            ),
        })
    }

    /// The 1-based line and (byte) column of byte `at` (for refusals: one pass over
    /// what precedes it).
    pub fn line_col(&self, at: usize) -> io::Result<(usize, usize)> {
        let at = at.min(self.len());
        if let Source::Memory(bytes) = self {
            return Ok(super::line_col(&bytes[..at]));
        }
        let (mut line, mut line_start, mut pos) = (1usize, 0usize, 0usize);
        let mut reader = self.reader();
        while pos < at {
            let buf = reader.fill_buf()?;
            if buf.is_empty() {
                break;
            }
            let take = buf.len().min(at - pos);
            for (i, b) in buf[..take].iter().enumerate() {
                if *b == b'\n' {
                    line += 1;
                    line_start = pos + i + 1;
                }
            }
            reader.consume(take);
            pos += take;
        }
        Ok((line, at - line_start + 1))
    }
}

/// A buffered reader of a [`Source`].
#[derive(Debug)]
pub enum Reader<'a> {
    Memory(&'a [u8]),
    File(BufReader<At<'a>>),
}

impl Read for Reader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Reader::Memory(bytes) => bytes.read(buf),
            Reader::File(r) => r.read(buf),
        }
    }
}

impl BufRead for Reader<'_> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        match self {
            Reader::Memory(bytes) => Ok(bytes),
            Reader::File(r) => r.fill_buf(),
        }
    }

    fn consume(&mut self, amount: usize) {
        match self {
            Reader::Memory(bytes) => bytes.consume(amount),
            Reader::File(r) => r.consume(amount),
        }
    }
}

/// A file read from its own offset up to `end`.
#[derive(Debug)]
pub struct At<'a> {
    file: &'a File,
    pos: u64,
    end: u64,
}

impl Read for At<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = usize::try_from(self.end.saturating_sub(self.pos)).unwrap_or(usize::MAX);
        let want = buf.len().min(left);
        if want == 0 {
            return Ok(0);
        }
        let n = self.file.read_at(&mut buf[..want], self.pos)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the staged document is shorter than it was written",
            ));
        }
        self.pos += n as u64;
        Ok(n)
    }
}

/// `text` written to an unnamed file, for tests that run the streamed passes on a
/// file as a staged body would be read.
#[cfg(test)]
pub(crate) fn file_of(bytes: impl AsRef<[u8]>) -> File {
    use std::io::Write;
    let mut file = tempfile::tempfile().expect("a temporary file");
    file.write_all(bytes.as_ref()).expect("written");
    file
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn a_file_reads_as_its_bytes_in_memory() {
        let text = "<a>\n <b>x</b>\n</a>\n".repeat(10_000);
        let mut file = tempfile::tempfile().unwrap();
        file.write_all(text.as_bytes()).unwrap();
        file.write_all(b"trailing bytes past len").unwrap();
        let memory = Source::from(text.as_str());
        let disk = Source::File {
            file: &file,
            len: text.len(),
        };
        let mut read = Vec::new();
        disk.reader().read_to_end(&mut read).unwrap();
        assert_eq!(read, text.as_bytes());
        for range in [0..3, 5..70_000, 190_000..text.len() + 10] {
            assert_eq!(
                disk.read(range.clone()).unwrap(),
                memory.read(range).unwrap()
            );
        }
        for at in [0, 1, 4, 65_537, 150_001, text.len()] {
            assert_eq!(disk.line_col(at).unwrap(), memory.line_col(at).unwrap());
        }
        assert_eq!(disk.text(0..3).unwrap(), "<a>");
    }
}
