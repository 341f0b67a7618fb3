//! The retention policy: how long filings' payloads are kept — `retention.years` per
//! document type, `retention.default_years` = 10 otherwise, never less than
//! [`MIN_YEARS`] — counted from the end of a filing's transaction. The compliance
//! sweeper (`compliance::sweeper`) applies it; intake locks a filing's document on
//! an originals bucket with Object Lock until filing time + its type's period
//! ([`RetentionConfig::retain_until`]), which is never later than the purge.

use std::collections::BTreeMap;

use chrono::{DateTime, Months, Utc};
use serde::{Deserialize, Serialize};

use crate::Error;

/// The legal minimum this intermediary keeps anything for (every original on a
/// bucket with Object Lock is locked at least this long from its write).
pub const MIN_YEARS: u32 = retention::originals::DEFAULT_LOCK_YEARS;

/// `[retention]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetentionConfig {
    /// Years payloads are kept after a filing's transaction ended (at least 10).
    pub default_years: u32,
    /// Per document type (`contribution-report`, `registration-form`,
    /// `employer-change`, `pension-record-sheet`, `preregistration`): years, at least 10.
    pub years: BTreeMap<String, u32>,
    /// How often the sweeper runs (seconds).
    pub sweep_interval_secs: u64,
    /// Most filings purged per sweep round (a sweep runs rounds until none is left).
    pub sweep_batch: i64,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        Self {
            default_years: MIN_YEARS,
            years: BTreeMap::new(),
            sweep_interval_secs: 3600,
            sweep_batch: 200,
        }
    }
}

impl RetentionConfig {
    pub fn validate(&self) -> Result<(), Error> {
        let known: Vec<&str> = crate::documents::DocumentType::codes()
            .chain([mobile_api::prereg::DOCUMENT_TYPE])
            .collect();
        crate::documents::check_type_names("retention.years", &self.years, &known)
            .map_err(Error::Config)?;
        if self.default_years < MIN_YEARS {
            return Err(Error::Config(format!(
                "retention.default_years must be at least {MIN_YEARS}"
            )));
        }
        for (ty, years) in &self.years {
            if *years < MIN_YEARS {
                return Err(Error::Config(format!(
                    "retention.years.{ty} must be at least {MIN_YEARS}"
                )));
            }
        }
        if self.sweep_interval_secs == 0 || self.sweep_batch <= 0 {
            return Err(Error::Config(
                "retention.sweep_interval_secs and retention.sweep_batch must be positive".into(),
            ));
        }
        Ok(())
    }

    /// Years a document type is kept.
    pub fn years_for(&self, document_type: &str) -> u32 {
        self.years
            .get(document_type)
            .copied()
            .unwrap_or(self.default_years)
            .max(MIN_YEARS)
    }

    /// Until when a filing of `document_type` made at `filed_at` is kept at least:
    /// the retain-until date of its document's Object Lock. Its transaction ends
    /// at or after `filed_at`, so the purge never comes before this.
    pub fn retain_until(&self, document_type: &str, filed_at: DateTime<Utc>) -> DateTime<Utc> {
        filed_at
            .checked_add_months(Months::new(
                self.years_for(document_type).saturating_mul(12),
            ))
            .unwrap_or(DateTime::<Utc>::MAX_UTC)
    }
}

pub(crate) fn years_before(now: DateTime<Utc>, years: u32) -> DateTime<Utc> {
    now.checked_sub_months(Months::new(years.saturating_mul(12)))
        .unwrap_or(DateTime::<Utc>::MIN_UTC)
}
