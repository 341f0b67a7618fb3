//! Slovak (and Czech) personal identification numbers — *rodné číslo* — written
//! without the slash: `YYMMDDSSS` (9 digits) or `YYMMDDSSSC` (10 digits).
//!
//! The rule implemented by [`check`]:
//!
//! - **Digits.** 9 or 10 ASCII digits, nothing else.
//! - **Birth date.** `YYMMDD` encodes the birth date. The month is `01`–`12` for men
//!   and `51`–`62` (+50) for women; for births from 2004 on, when a day's serial
//!   numbers may run out, `21`–`32` (+20) and `71`–`82` (+70) are also possible.
//!   The day must exist in that month (leap years included). The century follows
//!   from the length: a 9-digit number is `19YY`; a 10-digit number is `19YY` for
//!   `YY` ≥ 54 and `20YY` below. A number encoding a birth date after `today`, or
//!   a date that does not exist, is [`PersonalIdError::ImpossibleDate`].
//! - **9 digits only before 1954.** 9-digit numbers were issued until the end of
//!   1953; a 9-digit number for a birth in 1954 or later — by its own digits, or
//!   by the birth date the document states — is [`PersonalIdError::LegacyAfter1953`].
//! - **Check digit.** The value of a 10-digit number is divisible by 11. The
//!   historic exception is accepted: when the first nine digits leave remainder
//!   10 modulo 11, the check digit was written as `0` — valid for numbers issued
//!   before 1986 (birth years 1954–1985 here); for later births it is
//!   [`PersonalIdError::Checksum`].
//! - **Stated birth date.** When the document states the person's birth date, the
//!   encoded date must equal it ([`PersonalIdError::BirthDateMismatch`]).
//!
//! Checks run in the order format, check digit, birth date, 9-digit rule, stated
//! birth date; the first failure is returned.
//!
//! Not covered: temporary numbers (*dočasné rodné číslo*) assigned to foreigners by
//! a Sociálna poisťovňa branch follow the same shape and are checked the same way;
//! numbers that deviate from the rule cannot be filed through this profile.

use chrono::{Datelike, NaiveDate};

/// Sex as encoded in the month digits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sex {
    Male,
    Female,
}

/// What a valid personal number says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PersonalId {
    /// The number as an integer (all digits; a leading zero is lost).
    pub value: u64,
    /// The birth date the digits encode.
    pub birth_date: NaiveDate,
    pub sex: Sex,
    /// A 9-digit number (births before 1954).
    pub legacy: bool,
    /// A 10-digit number valid only by the historic remainder-10 exception.
    pub historic_check_digit: bool,
}

/// Why a personal number is not valid.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PersonalIdError {
    #[error("a personal number is 9 or 10 digits without a slash")]
    Format,
    #[error("the 10-digit personal number is not divisible by 11")]
    Checksum,
    #[error("the personal number does not encode a possible birth date")]
    ImpossibleDate,
    #[error("the personal number encodes the birth date {0}, which is in the future")]
    FutureDate(NaiveDate),
    #[error(
        "9-digit personal numbers exist only for births before 1954, but the birth year is {0}"
    )]
    LegacyAfter1953(i32),
    #[error(
        "the personal number encodes the birth date {encoded}, but the stated birth date is {stated}"
    )]
    BirthDateMismatch {
        encoded: NaiveDate,
        stated: NaiveDate,
    },
}

impl PersonalIdError {
    /// The finding code this error is reported with.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Format => "person.id.format",
            Self::Checksum => "person.id.checksum",
            Self::ImpossibleDate | Self::FutureDate(_) => "person.id.date",
            Self::LegacyAfter1953(_) => "person.id.legacy",
            Self::BirthDateMismatch { .. } => "person.id.birth-date-mismatch",
        }
    }
}

/// Last birth year for which 9-digit numbers were issued.
const LAST_LEGACY_YEAR: i32 = 1953;
/// Births from this year on may carry the +20 / +70 month offsets.
const EXTENDED_MONTHS_FROM: i32 = 2004;
/// The remainder-10 exception applies to births before this year.
const HISTORIC_CHECK_DIGIT_UNTIL: i32 = 1986;

/// Checks `number` (digits only) against the rule in the module documentation.
/// `stated_birth_date` is the birth date the document gives for the person, if any;
/// `today` bounds the encoded birth date.
pub fn check(
    number: &str,
    stated_birth_date: Option<NaiveDate>,
    today: NaiveDate,
) -> Result<PersonalId, PersonalIdError> {
    let bytes = number.as_bytes();
    if !(bytes.len() == 9 || bytes.len() == 10) || !bytes.iter().all(u8::is_ascii_digit) {
        return Err(PersonalIdError::Format);
    }
    let digit = |i: usize| u32::from(bytes[i] - b'0');
    let pair = |i: usize| digit(i) * 10 + digit(i + 1);
    let value = bytes
        .iter()
        .fold(0u64, |acc, b| acc * 10 + u64::from(b - b'0'));
    let legacy = bytes.len() == 9;
    let yy = i32::try_from(pair(0)).map_err(|_| PersonalIdError::Format)?;
    let year = if legacy || yy > LAST_LEGACY_YEAR % 100 {
        1900 + yy
    } else {
        2000 + yy
    };

    let mut historic_check_digit = false;
    if !legacy && value % 11 != 0 {
        let historic = (value / 10) % 11 == 10 && value % 10 == 0;
        if historic && year < HISTORIC_CHECK_DIGIT_UNTIL {
            historic_check_digit = true;
        } else {
            return Err(PersonalIdError::Checksum);
        }
    }

    let (month, sex, extended) = match pair(2) {
        m @ 1..=12 => (m, Sex::Male, false),
        m @ 51..=62 => (m - 50, Sex::Female, false),
        m @ 21..=32 => (m - 20, Sex::Male, true),
        m @ 71..=82 => (m - 70, Sex::Female, true),
        _ => return Err(PersonalIdError::ImpossibleDate),
    };
    if extended && year < EXTENDED_MONTHS_FROM {
        return Err(PersonalIdError::ImpossibleDate);
    }
    let birth_date =
        NaiveDate::from_ymd_opt(year, month, pair(4)).ok_or(PersonalIdError::ImpossibleDate)?;
    if birth_date > today {
        return Err(PersonalIdError::FutureDate(birth_date));
    }

    if legacy {
        let stated_year = stated_birth_date.map_or(year, |d| d.year());
        if year > LAST_LEGACY_YEAR || stated_year > LAST_LEGACY_YEAR {
            return Err(PersonalIdError::LegacyAfter1953(year.max(stated_year)));
        }
    }
    if let Some(stated) = stated_birth_date
        && stated != birth_date
    {
        return Err(PersonalIdError::BirthDateMismatch {
            encoded: birth_date,
            stated,
        });
    }
    Ok(PersonalId {
        value,
        birth_date,
        sex,
        legacy,
        historic_check_digit,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(y: i32, m: u32, day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, day).unwrap()
    }

    const TODAY: fn() -> NaiveDate = || d(2026, 11, 20);

    fn ok(n: &str) -> PersonalId {
        check(n, None, TODAY()).unwrap_or_else(|e| panic!("{n}: {e}"))
    }

    fn err(n: &str) -> PersonalIdError {
        check(n, None, TODAY()).expect_err(n)
    }

    #[test]
    fn valid_ten_digit_numbers_decode_date_and_sex() {
        let p = ok("8001011238");
        assert_eq!(
            (p.birth_date, p.sex, p.legacy),
            (d(1980, 1, 1), Sex::Male, false)
        );
        assert_eq!(p.value, 8_001_011_238);
        assert!(!p.historic_check_digit);
        let p = ok("8051011243");
        assert_eq!((p.birth_date, p.sex), (d(1980, 1, 1), Sex::Female));
        let p = ok("8555121234");
        assert_eq!((p.birth_date, p.sex), (d(1985, 5, 12), Sex::Female));
        // 2000s: YY below 54 is 20YY for 10-digit numbers.
        let p = ok("0001010020");
        assert_eq!((p.birth_date, p.value), (d(2000, 1, 1), 1_010_020));
        assert_eq!(ok("2501010039").birth_date, d(2025, 1, 1));
    }

    #[test]
    fn extended_months_after_2004() {
        let p = ok("0421011239");
        assert_eq!((p.birth_date, p.sex), (d(2004, 1, 1), Sex::Male));
        let p = ok("0771011252");
        assert_eq!((p.birth_date, p.sex), (d(2007, 1, 1), Sex::Female));
        // +20 before 2004 is impossible (1980, month 21), though divisible by 11.
        assert_eq!(8_021_011_240u64 % 11, 0);
        assert_eq!(err("8021011240"), PersonalIdError::ImpossibleDate);
    }

    #[test]
    fn checksum() {
        assert_eq!(err("8001011239"), PersonalIdError::Checksum);
        assert_eq!(err("8001011230"), PersonalIdError::Checksum);
        // Every single-digit change of a valid number breaks it.
        let good = "8555121234";
        for i in 0..10 {
            for c in b'0'..=b'9' {
                let mut b = good.as_bytes().to_vec();
                if b[i] == c {
                    continue;
                }
                b[i] = c;
                let s = String::from_utf8(b).unwrap();
                assert!(check(&s, None, TODAY()).is_err(), "{s}");
            }
        }
    }

    #[test]
    fn historic_remainder_ten_exception_before_1986() {
        // First nine digits leave remainder 10; check digit written as 0.
        let p = ok("8001011030");
        assert!(p.historic_check_digit);
        assert_eq!(p.birth_date, d(1980, 1, 1));
        assert!(ok("7005151000").historic_check_digit);
        // Not for births from 1986 on.
        assert_eq!(err("8806061100"), PersonalIdError::Checksum);
        assert_eq!(err("0101011010"), PersonalIdError::Checksum);
        // Remainder 10 with a check digit other than 0 is never valid.
        assert_eq!(err("8001011031"), PersonalIdError::Checksum);
    }

    #[test]
    fn nine_digit_numbers_only_before_1954() {
        let p = ok("530101123");
        assert_eq!((p.birth_date, p.legacy), (d(1953, 1, 1), true));
        assert_eq!(ok("055101001").sex, Sex::Female);
        assert_eq!(err("540101123"), PersonalIdError::LegacyAfter1953(1954));
        assert_eq!(err("800101123"), PersonalIdError::LegacyAfter1953(1980));
        // The digits say 1905, the document says 2005: the birth year is 2005.
        assert_eq!(
            check("050304123", Some(d(2005, 3, 4)), TODAY()),
            Err(PersonalIdError::LegacyAfter1953(2005))
        );
        // No check digit on 9-digit numbers: any serial is fine.
        ok("300228999");
        // +20 months never occur in 9-digit numbers.
        assert_eq!(err("302101123"), PersonalIdError::ImpossibleDate);
    }

    #[test]
    fn impossible_dates() {
        // 9-digit numbers (no check digit) isolate the date rule: month 13, month 0,
        // month 50, month 63, day 0, day 32, 31 April, 30 February, 29 February 1900
        // and 1930 (not leap years).
        for n in [
            "501301123",
            "500001123",
            "505001123",
            "506301123",
            "500100123",
            "500132123",
            "500431123",
            "500230123",
            "000229123",
            "300229999",
        ] {
            assert_eq!(err(n), PersonalIdError::ImpossibleDate, "{n}");
        }
        // 29 February of a leap year exists.
        assert_eq!(ok("480229123").birth_date, d(1948, 2, 29));
        assert_eq!(ok("300228999").birth_date, d(1930, 2, 28));
    }

    #[test]
    fn future_birth_dates_are_impossible() {
        // 10-digit 50YYMMDD decodes to 2050.
        let n = "5001010003";
        assert_eq!(5_001_010_003u64 % 11, 0);
        assert_eq!(err(n), PersonalIdError::FutureDate(d(2050, 1, 1)));
        assert_eq!(err(n).code(), "person.id.date");
        // The day after today.
        let tomorrow = TODAY().succ_opt().unwrap();
        let head = format!("{}", tomorrow.format("%y%m%d")) + "000";
        let v: u64 = head.parse().unwrap();
        let check_digit = v % 11;
        assert!(check_digit < 10);
        let n = format!("{head}{check_digit}");
        assert_eq!(err(&n), PersonalIdError::FutureDate(tomorrow));
        // Today itself is fine.
        let head = format!("{}", TODAY().format("%y%m%d")) + "000";
        let v: u64 = head.parse().unwrap();
        assert!(v % 11 < 10);
        ok(&format!("{head}{}", v % 11));
    }

    #[test]
    fn format() {
        for n in [
            "",
            "12345678",
            "12345678901",
            "80010/1123",
            "800101123a",
            " 800101123",
            "８００１０１１２３",
        ] {
            assert_eq!(err(n), PersonalIdError::Format, "{n:?}");
        }
        assert_eq!(PersonalIdError::Format.code(), "person.id.format");
    }

    #[test]
    fn stated_birth_date() {
        assert!(check("8051011243", Some(d(1980, 1, 1)), TODAY()).is_ok());
        assert_eq!(
            check("8051011243", Some(d(1980, 1, 2)), TODAY()),
            Err(PersonalIdError::BirthDateMismatch {
                encoded: d(1980, 1, 1),
                stated: d(1980, 1, 2)
            })
        );
        assert!(check("530101123", Some(d(1953, 1, 1)), TODAY()).is_ok());
        assert_eq!(
            check("530101123", Some(d(1953, 1, 2)), TODAY())
                .unwrap_err()
                .code(),
            "person.id.birth-date-mismatch"
        );
    }

    #[test]
    fn codes() {
        assert_eq!(PersonalIdError::Checksum.code(), "person.id.checksum");
        assert_eq!(PersonalIdError::ImpossibleDate.code(), "person.id.date");
        assert_eq!(
            PersonalIdError::LegacyAfter1953(1960).code(),
            "person.id.legacy"
        );
    }
}
