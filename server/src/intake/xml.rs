//! Parsing untrusted XML, safely: UTF-8 only, no DTD (so no entity expansion, no
//! external entities), a nesting-depth limit, and the body size limit enforced
//! before this is called. Everything refused here is refused with one [`Refusal`]
//! naming the line and column.

use uppsala::{Document, XmlError};

use super::Refusal;

/// Limits on what the parser accepts.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Deepest element nesting accepted (the document element is depth 1).
    pub max_depth: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self { max_depth: 64 }
    }
}

/// Parses `bytes` as one XML document, or says why it is not acceptable.
pub fn parse(bytes: &[u8], limits: Limits) -> Result<Document<'_>, Refusal> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(Refusal::new("xml.empty", "the body is empty", "/"));
    }
    let text = std::str::from_utf8(bytes).map_err(|e| {
        let (line, col) = line_col(&bytes[..e.valid_up_to()]);
        Refusal::new(
            "xml.encoding",
            format!(
                "the document is not valid UTF-8 (at byte {}); documents must be UTF-8",
                e.valid_up_to()
            ),
            format!("line {line}, column {col}"),
        )
    })?;
    if let Some(enc) = declared_encoding(text)
        && !enc.eq_ignore_ascii_case("utf-8")
        && !enc.eq_ignore_ascii_case("utf8")
    {
        return Err(Refusal::new(
            "xml.encoding",
            format!("the XML declaration names encoding {enc:?}; documents must be UTF-8"),
            "line 1",
        ));
    }
    uppsala::Parser::new()
        .with_forbid_dtd(true)
        .with_forbid_entities(true)
        .with_max_depth(limits.max_depth)
        .parse(text)
        .map_err(|e| refusal_for(&e, limits))
}

fn refusal_for(e: &XmlError, limits: Limits) -> Refusal {
    let (message, line, column) = match e {
        XmlError::Parse(p) => (p.message.as_str(), p.line, p.column),
        XmlError::WellFormedness(w) => (w.message.as_str(), w.line, w.column),
        XmlError::Namespace(n) => (n.message.as_str(), n.line, n.column),
        XmlError::Validation(v) => (
            v.message.as_str(),
            v.line.unwrap_or(0),
            v.column.unwrap_or(0),
        ),
        XmlError::UnexpectedEof => ("the document ends unexpectedly", 0, 0),
        XmlError::XPath(x) => (x.message.as_str(), 0, 0),
    };
    let location = if line == 0 {
        "/".to_owned()
    } else {
        format!("line {line}, column {column}")
    };
    let (code, message) = if message.contains("DOCTYPE") {
        (
            "xml.dtd-forbidden",
            "the document has a DOCTYPE declaration; DTDs and entities are not accepted".to_owned(),
        )
    } else if message.contains("maximum depth") {
        (
            "xml.too-deep",
            format!(
                "elements are nested deeper than {} levels",
                limits.max_depth
            ),
        )
    } else {
        (
            "xml.malformed",
            format!("the document is not well-formed XML: {message}"),
        )
    };
    Refusal::new(code, message, location)
}

/// The `encoding` pseudo-attribute of the XML declaration, if there is one.
fn declared_encoding(text: &str) -> Option<&str> {
    let decl = text.strip_prefix('\u{feff}').unwrap_or(text);
    let decl = decl.strip_prefix("<?xml")?;
    let decl = &decl[..decl.find("?>")?];
    let rest = &decl[decl.find("encoding")? + "encoding".len()..];
    let rest = rest.trim_start().strip_prefix('=')?.trim_start();
    let quote = rest.chars().next().filter(|c| *c == '"' || *c == '\'')?;
    let rest = &rest[1..];
    Some(&rest[..rest.find(quote)?])
}

fn line_col(prefix: &[u8]) -> (usize, usize) {
    let line = prefix.iter().filter(|b| **b == b'\n').count() + 1;
    let col = prefix.len()
        - prefix
            .iter()
            .rposition(|b| *b == b'\n')
            .map_or(0, |p| p + 1)
        + 1;
    (line, col)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(bytes: &[u8]) -> &'static str {
        match parse(bytes, Limits { max_depth: 8 }) {
            Ok(_) => "ok",
            Err(r) => r.code,
        }
    }

    #[test]
    fn hostile_and_broken_input_is_refused_with_its_own_code() {
        let cases: &[(&[u8], &str)] = &[
            (b"<a>fine</a>", "ok"),
            ("\u{feff}<a/>".as_bytes(), "ok"),
            (b"<?xml version='1.0' encoding='UTF-8'?><a/>", "ok"),
            (b"", "xml.empty"),
            (b" \n\t", "xml.empty"),
            (b"<a>\xff</a>", "xml.encoding"),
            (
                b"<?xml version=\"1.0\" encoding=\"windows-1250\"?><a/>",
                "xml.encoding",
            ),
            // XXE: an external entity.
            (
                b"<!DOCTYPE a [<!ENTITY x SYSTEM \"file:///etc/passwd\">]><a>&x;</a>",
                "xml.dtd-forbidden",
            ),
            // Billion laughs.
            (
                b"<!DOCTYPE a [<!ENTITY l \"lol\"><!ENTITY l2 \"&l;&l;&l;&l;\">]><a>&l2;</a>",
                "xml.dtd-forbidden",
            ),
            // External DTD.
            (
                b"<!DOCTYPE a SYSTEM \"http://127.0.0.1:1/x.dtd\"><a/>",
                "xml.dtd-forbidden",
            ),
            (b"<a>&undeclared;</a>", "xml.malformed"),
            (b"<a><b></a>", "xml.malformed"),
            (b"<a/><b/>", "xml.malformed"),
            (b"not xml at all", "xml.malformed"),
            (
                b"<a><b><c><d><e><f><g><h><i/></h></g></f></e></d></c></b></a>",
                "xml.too-deep",
            ),
        ];
        for (input, want) in cases {
            assert_eq!(code(input), *want, "{}", String::from_utf8_lossy(input));
        }
    }

    #[test]
    fn refusals_name_where() {
        let r = parse(b"<a>\n  <b>\n</a>", Limits::default()).unwrap_err();
        assert_eq!(r.code, "xml.malformed");
        assert!(r.location.starts_with("line "), "{r:?}");
        let r = parse(b"<a>\nok\xc3</a>", Limits::default()).unwrap_err();
        assert_eq!(r.location, "line 2, column 3");
    }

    #[test]
    fn a_deep_document_is_refused_without_recursing_into_it() {
        let deep = format!("{}{}", "<a>".repeat(100_000), "</a>".repeat(100_000));
        assert_eq!(code(deep.as_bytes()), "xml.too-deep");
    }
}
