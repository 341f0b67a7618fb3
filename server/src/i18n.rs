//! The languages people read `ivan` in (the portal, and in time its mails), and the
//! one way times are shown to them.
//!
//! Texts are [Fluent](https://projectfluent.org) messages in
//! `server/locales/<lang>/*.ftl`, compiled into the binary; English is the default
//! and the fallback for a message a translation lacks (a unit test fails on any such
//! gap, and on a message used in the templates that English lacks). A signed-in
//! user's language is their own choice (kept with the user); before sign-in the
//! browser's `Accept-Language` decides.
//!
//! Times are shown as `2026-12-05 11:26 CET`: minutes, the portal's time zone
//! (`portal.time_zone`, the employers' zone), its abbreviation, in every language.

use std::borrow::Cow;
use std::collections::HashMap;

use chrono::{DateTime, Utc};
use fluent_templates::fluent_bundle::FluentValue;
use fluent_templates::{LanguageIdentifier, Loader};
use serde::{Deserialize, Serialize};

fluent_templates::static_loader! {
    static LOCALES = {
        locales: "./locales",
        fallback_language: "en",
        // No Unicode isolation marks around arguments: the texts are HTML, and
        // names and numbers read the same either way in these languages.
        customise: |bundle| bundle.set_use_isolating(false),
    };
}

/// A language of the portal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Lang {
    #[default]
    En,
    Sk,
    Cs,
}

impl Lang {
    /// Every language, in the order a chooser lists them.
    pub const ALL: [Lang; 3] = [Lang::En, Lang::Sk, Lang::Cs];

    /// The BCP 47 tag (`<html lang>`, the stored choice).
    pub fn tag(self) -> &'static str {
        match self {
            Lang::En => "en",
            Lang::Sk => "sk",
            Lang::Cs => "cs",
        }
    }

    /// The language's name in itself, for a chooser.
    pub fn name(self) -> &'static str {
        match self {
            Lang::En => "English",
            Lang::Sk => "Slovenčina",
            Lang::Cs => "Čeština",
        }
    }

    /// The language of a tag (`sk`, `sk-SK`, `CS`); `None` for one we do not have.
    pub fn from_tag(tag: &str) -> Option<Lang> {
        let primary = tag.trim().split(['-', '_']).next()?.to_ascii_lowercase();
        Lang::ALL.into_iter().find(|l| l.tag() == primary)
    }

    /// The best of ours for an `Accept-Language` header (highest `q` first; ties in
    /// the header's order); English when none matches.
    pub fn negotiate(accept_language: &str) -> Lang {
        let mut offers: Vec<(f32, usize, Lang)> = accept_language
            .split(',')
            .enumerate()
            .filter_map(|(i, part)| {
                let mut pieces = part.split(';');
                let lang = Lang::from_tag(pieces.next()?)?;
                let q = pieces
                    .find_map(|p| p.trim().strip_prefix("q="))
                    .map_or(Some(1.0), |q| q.trim().parse::<f32>().ok())?;
                (q > 0.0).then_some((q, i, lang))
            })
            .collect();
        offers.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        offers.first().map_or(Lang::En, |o| o.2)
    }

    fn id(self) -> LanguageIdentifier {
        // The three tags are valid identifiers.
        self.tag().parse().unwrap_or_default()
    }

    /// The message `key` in this language (English if this language lacks it; the
    /// key itself if English does too, which a unit test rules out).
    pub fn t(self, key: &str) -> String {
        self.try_t(key).unwrap_or_else(|| key.to_owned())
    }

    /// The message `key`, if this language (or English) has it.
    pub fn try_t(self, key: &str) -> Option<String> {
        LOCALES.try_lookup(&self.id(), key)
    }

    /// The message `key` with arguments (`{ $name }` in the message).
    pub fn t_with(self, key: &str, args: &[(&'static str, &dyn std::fmt::Display)]) -> String {
        let args: HashMap<Cow<'static, str>, FluentValue<'_>> = args
            .iter()
            .map(|(k, v)| (Cow::Borrowed(*k), FluentValue::from(v.to_string())))
            .collect();
        LOCALES
            .try_lookup_with_args(&self.id(), key, &args)
            .unwrap_or_else(|| key.to_owned())
    }

    /// The message `prefix-value` (a label for a machine id such as a state or a
    /// document type: `state-refused_by_authority`), or the id itself when there is
    /// no such message (an id from a newer version).
    pub fn label(self, prefix: &str, value: &str) -> String {
        self.try_t(&format!("{prefix}-{value}"))
            .unwrap_or_else(|| value.to_owned())
    }
}

/// A language named by its tag (`--language sk`, the account page's form); the
/// error lists the languages there are.
impl std::str::FromStr for Lang {
    type Err = String;

    fn from_str(tag: &str) -> Result<Self, String> {
        Lang::from_tag(tag).ok_or_else(|| format!("{tag:?}: one of en, sk, cs"))
    }
}

/// The zone times are shown in when none is configured: the employers' own.
pub const DEFAULT_ZONE: chrono_tz::Tz = chrono_tz::Europe::Bratislava;

/// The zone times are shown in to people (`portal.time_zone`), set once at start-up
/// by [`set_time_zone`]; [`DEFAULT_ZONE`] until then.
static ZONE: std::sync::OnceLock<chrono_tz::Tz> = std::sync::OnceLock::new();

/// Sets the zone [`shown`] uses (the first call wins: one zone per process).
pub fn set_time_zone(tz: chrono_tz::Tz) {
    let _ = ZONE.set(tz);
}

/// A time as mails and other texts for people show it: [`when`] in the process's
/// zone ([`set_time_zone`]).
pub fn shown(t: &DateTime<Utc>) -> String {
    when(t, ZONE.get().copied().unwrap_or(DEFAULT_ZONE))
}

/// A time as people read it everywhere in `ivan`: `2026-12-05 11:26 CET`, in `tz`.
pub fn when(t: &DateTime<Utc>, tz: chrono_tz::Tz) -> String {
    t.with_timezone(&tz).format("%Y-%m-%d %H:%M %Z").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn languages_are_negotiated_from_accept_language() {
        assert_eq!(Lang::negotiate("sk-SK,sk;q=0.9,en;q=0.8"), Lang::Sk);
        assert_eq!(Lang::negotiate("de-DE,cs;q=0.7,en;q=0.8"), Lang::En);
        assert_eq!(Lang::negotiate("de-DE,cs;q=0.9,en;q=0.8"), Lang::Cs);
        assert_eq!(Lang::negotiate("fr"), Lang::En);
        assert_eq!(Lang::negotiate(""), Lang::En);
        assert_eq!(Lang::negotiate("sk;q=0,cs"), Lang::Cs);
        assert_eq!(Lang::from_tag("CS-cz"), Some(Lang::Cs));
    }

    #[test]
    fn times_are_minutes_in_the_portal_zone() {
        let t: DateTime<Utc> = "2026-12-05T10:26:10.492777Z".parse().unwrap();
        assert_eq!(
            when(&t, chrono_tz::Europe::Bratislava),
            "2026-12-05 11:26 CET"
        );
        let summer: DateTime<Utc> = "2026-07-01T10:00:00Z".parse().unwrap();
        assert_eq!(
            when(&summer, chrono_tz::Europe::Prague),
            "2026-07-01 12:00 CEST"
        );
    }

    /// Every message of English exists in every other language, and no language
    /// has a message English lacks; every `t("…")`/`label` key the templates and
    /// the portal's code use exists in English.
    #[test]
    fn translations_are_complete() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("locales");
        let keys = |lang: &str| -> std::collections::BTreeSet<String> {
            let mut keys = std::collections::BTreeSet::new();
            for entry in std::fs::read_dir(dir.join(lang)).unwrap() {
                let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
                for line in text.lines() {
                    if let Some((key, _)) = line.split_once(" =")
                        && !key.starts_with([' ', '#', '.', '*', '['])
                        && !key.is_empty()
                    {
                        keys.insert(key.trim().to_owned());
                    }
                }
            }
            keys
        };
        let en = keys("en");
        assert!(en.len() > 50, "{en:?}");
        for lang in ["sk", "cs"] {
            let other = keys(lang);
            let missing: Vec<_> = en.difference(&other).collect();
            let extra: Vec<_> = other.difference(&en).collect();
            assert!(missing.is_empty(), "{lang} lacks {missing:?}");
            assert!(
                extra.is_empty(),
                "{lang} has messages English lacks: {extra:?}"
            );
        }
        // Keys used by the templates and the portal's code.
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut sources = Vec::new();
        for sub in ["templates/portal", "src/portal"] {
            for entry in std::fs::read_dir(root.join(sub)).unwrap() {
                sources.push(std::fs::read_to_string(entry.unwrap().path()).unwrap());
            }
        }
        let mut used = std::collections::BTreeSet::new();
        for text in &sources {
            for call in [".t(\"", ".t1(\"", ".t2(\"", ".t_with(\""] {
                for (at, _) in text.match_indices(call) {
                    let rest = &text[at + call.len()..];
                    if let Some(key) = rest.split('"').next() {
                        used.insert(key.to_owned());
                    }
                }
            }
        }
        // Error pages name their message by key (`PortalError::Keyed`, `Forbidden`).
        for text in &sources {
            for (at, _) in text.match_indices("\"error-") {
                if let Some(key) = text[at + 1..].split('"').next()
                    && key
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b == b'-' || b.is_ascii_digit())
                {
                    used.insert(key.to_owned());
                }
            }
        }
        let unknown: Vec<_> = used.iter().filter(|k| !en.contains(*k)).collect();
        assert!(unknown.is_empty(), "used but not in English: {unknown:?}");
        // Each language renders every message without a Fluent error.
        for lang in Lang::ALL {
            for key in &en {
                assert_ne!(lang.t(key), "", "{lang:?} {key}");
            }
        }
    }
}
