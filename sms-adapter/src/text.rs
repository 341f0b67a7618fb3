//! Destination and text checks shared by every transport, and the SMPP text encoding.
//!
//! A text is sent with SMPP `data_coding` 0 (the SMSC default alphabet) only when
//! every character is "GSM-7 safe ASCII": a character whose code is the same in ASCII
//! and in the GSM 03.38 default alphabet, so the SMSC reads it right whether it takes
//! the octets as ASCII/IA5 or as unpacked GSM-7. That is `A–Z a–z 0–9`, space, LF, CR
//! and ``!"#%&'()*+,-./:;<=>?``. `@ $ _` (different codes in GSM-7), `` ` `` (absent)
//! and ``[ ] { } \ ^ ~ |`` (GSM-7 extension table) are not safe. Such a text may have
//! up to [`GSM7_MAX`] characters.
//!
//! Any other text goes as UCS-2 (`data_coding` 8, UTF-16BE octets, so characters
//! outside the BMP take two units) of at most [`UCS2_MAX`] code units. Control
//! characters other than LF and CR are refused. Longer texts are refused (permanent
//! error): no concatenation.

use crate::Error;

/// Characters in one GSM-7 segment.
pub const GSM7_MAX: usize = 160;
/// UTF-16 code units in one UCS-2 segment.
pub const UCS2_MAX: usize = 70;

/// SMPP `data_coding` for the SMSC default alphabet.
pub const DATA_CODING_DEFAULT: u8 = 0x00;
/// SMPP `data_coding` for UCS-2.
pub const DATA_CODING_UCS2: u8 = 0x08;

/// The digits of an E.164 number (`+` then 7–15 digits, the first not `0`), without
/// the `+`.
pub fn e164_digits(to: &str) -> Result<&str, Error> {
    let invalid = || Error::InvalidDestination { to: to.to_owned() };
    let digits = to.strip_prefix('+').ok_or_else(invalid)?;
    let ok = (7..=15).contains(&digits.len())
        && digits.bytes().all(|b| b.is_ascii_digit())
        && !digits.starts_with('0');
    if ok { Ok(digits) } else { Err(invalid()) }
}

/// True for a character with the same code in ASCII and the GSM-7 default alphabet.
pub fn is_gsm7_safe(c: char) -> bool {
    c.is_ascii_alphanumeric()
        || matches!(c, ' ' | '\n' | '\r')
        || "!\"#%&'()*+,-./:;<=>?".contains(c)
}

/// A text encoded for one SMPP `short_message`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encoded {
    pub data_coding: u8,
    pub octets: Vec<u8>,
}

/// Checks that `text` fits one segment and encodes it (see the module docs).
pub fn encode(text: &str) -> Result<Encoded, Error> {
    if text.is_empty() {
        return Err(Error::InvalidText("empty".to_owned()));
    }
    if let Some(c) = text
        .chars()
        .find(|c| c.is_control() && !matches!(c, '\n' | '\r'))
    {
        return Err(Error::InvalidText(format!(
            "control character U+{:04X} cannot be sent",
            u32::from(c)
        )));
    }
    if text.chars().all(is_gsm7_safe) {
        let len = text.len();
        if len > GSM7_MAX {
            return Err(Error::TextTooLong {
                len,
                max: GSM7_MAX,
                encoding: "GSM-7",
            });
        }
        return Ok(Encoded {
            data_coding: DATA_CODING_DEFAULT,
            octets: text.as_bytes().to_vec(),
        });
    }
    let units: Vec<u16> = text.encode_utf16().collect();
    if units.len() > UCS2_MAX {
        return Err(Error::TextTooLong {
            len: units.len(),
            max: UCS2_MAX,
            encoding: "UCS-2",
        });
    }
    Ok(Encoded {
        data_coding: DATA_CODING_UCS2,
        octets: units.iter().flat_map(|u| u.to_be_bytes()).collect(),
    })
}

/// Decodes a `short_message` by its `data_coding`: UCS-2 as UTF-16BE, anything else
/// octet by octet as Latin-1 (which covers ASCII / IA5 / GSM-7-safe texts).
pub fn decode(data_coding: u8, octets: &[u8]) -> String {
    if data_coding == DATA_CODING_UCS2 {
        let units: Vec<u16> = octets
            .chunks(2)
            .map(|c| u16::from_be_bytes([c[0], c.get(1).copied().unwrap_or(0)]))
            .collect();
        String::from_utf16_lossy(&units)
    } else {
        octets.iter().map(|&b| char::from(b)).collect()
    }
}

/// Checks a message as every transport does before sending it.
pub(crate) fn check(sms: &crate::Sms) -> Result<(), Error> {
    e164_digits(&sms.to)?;
    encode(&sms.text)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destinations() {
        assert_eq!(e164_digits("+420601123456").unwrap(), "420601123456");
        for bad in [
            "420601123456",
            "+",
            "+0420601123",
            "+42060112345678901",
            "+420 601",
            "+123456",
        ] {
            let err = e164_digits(bad).unwrap_err();
            assert!(err.is_permanent(), "{bad}");
        }
    }

    #[test]
    fn gsm_vs_ucs2() {
        let e = encode("Your code is 123456.").unwrap();
        assert_eq!(e.data_coding, 0);
        assert_eq!(e.octets, b"Your code is 123456.");
        for s in ["Dobrý den", "a@b", "cost $5", "a_b", "[x]", "tab\tx"] {
            if s.contains('\t') {
                assert!(matches!(encode(s), Err(Error::InvalidText(_))));
                continue;
            }
            let e = encode(s).unwrap();
            assert_eq!(e.data_coding, 8, "{s}");
            assert_eq!(decode(8, &e.octets), s);
        }
    }

    #[test]
    fn limits() {
        assert!(encode(&"a".repeat(160)).is_ok());
        let err = encode(&"a".repeat(161)).unwrap_err();
        assert!(err.is_permanent());
        assert!(matches!(
            err,
            Error::TextTooLong {
                len: 161,
                max: 160,
                ..
            }
        ));
        assert!(encode(&"ý".repeat(70)).is_ok());
        assert!(matches!(
            encode(&"ý".repeat(71)),
            Err(Error::TextTooLong {
                len: 71,
                max: 70,
                ..
            })
        ));
        // A character outside the BMP takes two UTF-16 units.
        assert!(matches!(
            encode(&"😀".repeat(36)),
            Err(Error::TextTooLong { len: 72, .. })
        ));
        assert!(matches!(encode(""), Err(Error::InvalidText(_))));
    }
}
