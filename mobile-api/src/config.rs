use serde::{Deserialize, Serialize};

/// `[mobile]`: the mobile channel's limits and lifetimes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MobileConfig {
    /// Digits of a generated PIN (6–12).
    pub pin_digits: u32,
    /// Wrong PINs in a row for a phone number (from any source) that are answered at
    /// once; after that each further attempt for the phone must wait
    /// ([`pin_delay_base_secs`](Self::pin_delay_base_secs), doubling per wrong PIN).
    /// An attempt made too early is answered `429` with `Retry-After`, without a PIN
    /// check and without counting as a wrong PIN. A successful login resets it.
    pub pin_failures_before_delay: u32,
    /// The first per-phone delay, seconds; it doubles with each further wrong PIN.
    pub pin_delay_base_secs: u64,
    /// The longest per-phone delay, seconds.
    pub pin_delay_cap_secs: u64,
    /// Wrong PINs for a phone within [`lock_window_secs`](Self::lock_window_secs) that
    /// lock its accesses (sustained abuse) until the employer generates a new PIN; the
    /// employer is alerted (log entry `employer.alert` and mail).
    pub lock_after_failures: u32,
    /// The window of [`lock_after_failures`](Self::lock_after_failures), seconds.
    pub lock_window_secs: u64,
    /// Argon2id memory cost in KiB (OWASP minimum: 19456 = 19 MiB).
    pub argon2_memory_kib: u32,
    /// Argon2id passes (OWASP minimum with 19 MiB: 2).
    pub argon2_iterations: u32,
    /// Argon2id lanes.
    pub argon2_parallelism: u32,
    /// PIN hashes computed at once; further logins wait (bounded by `hash_wait_ms`).
    pub max_concurrent_hashes: usize,
    /// How long a login may wait for a hashing slot before `503`.
    pub hash_wait_ms: u64,
    /// Login (and refresh) attempts per source network per minute (then `429`); a source
    /// network is the client's IPv4 /24 or IPv6 /64.
    pub logins_per_minute_per_source: u32,
    /// Lifetime of an access token (JWT), seconds.
    pub access_token_secs: u64,
    /// A session (refresh-token family) ends this long after its login, seconds.
    pub session_days: u32,
    /// An unpaired pre-registration is overdue this long after it was received
    /// (seconds; default 3 days).
    pub pairing_deadline_secs: u64,
    /// The phone user's SMS reminder goes this long before the deadline (seconds;
    /// default one day).
    pub reminder_before_secs: u64,
    /// A registration form pairs with a pre-registration when their effective dates
    /// differ by at most this many days.
    pub pairing_tolerance_days: u32,
    /// How often the deadline sweeper runs, seconds.
    pub sweep_interval_secs: u64,
    /// Retry delays of the SMS outbox: full jitter below min(cap, base · 2^attempt).
    pub sms_retry_base_ms: u64,
    pub sms_retry_cap_secs: u64,
    /// Look for SMS to send this often when idle, milliseconds.
    pub sms_idle_ms: u64,
}

impl Default for MobileConfig {
    fn default() -> Self {
        Self {
            pin_digits: 8,
            pin_failures_before_delay: 3,
            pin_delay_base_secs: 2,
            pin_delay_cap_secs: 900,
            lock_after_failures: 20,
            lock_window_secs: 86_400,
            argon2_memory_kib: 19_456,
            argon2_iterations: 2,
            argon2_parallelism: 1,
            max_concurrent_hashes: 2,
            hash_wait_ms: 5_000,
            logins_per_minute_per_source: 20,
            access_token_secs: 900,
            session_days: 30,
            pairing_deadline_secs: 3 * 86_400,
            reminder_before_secs: 86_400,
            pairing_tolerance_days: 3,
            sweep_interval_secs: 60,
            sms_retry_base_ms: 1_000,
            sms_retry_cap_secs: 300,
            sms_idle_ms: 500,
        }
    }
}

impl MobileConfig {
    /// Refuses values that would make the channel unsafe or unusable.
    pub fn validate(&self) -> Result<(), String> {
        if !(6..=12).contains(&self.pin_digits) {
            return Err("mobile.pin_digits must be 6 to 12".into());
        }
        if self.lock_after_failures == 0 || self.lock_window_secs == 0 {
            return Err(
                "mobile.lock_after_failures and lock_window_secs must be at least 1".into(),
            );
        }
        if self.pin_delay_base_secs == 0 || self.pin_delay_cap_secs < self.pin_delay_base_secs {
            return Err(
                "mobile.pin_delay_base_secs must be at least 1 and pin_delay_cap_secs at least pin_delay_base_secs".into(),
            );
        }
        if self.argon2_memory_kib < 19_456 || self.argon2_iterations < 2 {
            return Err(
                "mobile.argon2_memory_kib / argon2_iterations are below OWASP's minimum for Argon2id (19456 KiB, 2 passes)".into(),
            );
        }
        if self.argon2_parallelism == 0 || self.max_concurrent_hashes == 0 {
            return Err(
                "mobile.argon2_parallelism and max_concurrent_hashes must be at least 1".into(),
            );
        }
        if self.logins_per_minute_per_source == 0 {
            return Err("mobile.logins_per_minute_per_source must be at least 1".into());
        }
        if !(60..=3600).contains(&self.access_token_secs) {
            return Err("mobile.access_token_secs must be 60 to 3600".into());
        }
        if self.session_days == 0
            || self.pairing_deadline_secs == 0
            || self.sweep_interval_secs == 0
        {
            return Err("mobile.session_days, pairing_deadline_secs and sweep_interval_secs must be at least 1".into());
        }
        Ok(())
    }
}
