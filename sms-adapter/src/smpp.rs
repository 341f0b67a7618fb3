//! The SMPP transport (client side, via `rusmppc`).

use std::str::FromStr;
use std::time::{Duration, Instant};

use futures::StreamExt;
use futures::future::BoxFuture;
use rusmpp::pdus::{BindTransceiver, BindTransmitter, DeliverSm, DeliverSmResp, SubmitSm};
use rusmpp::tlvs::TlvValue;
use rusmpp::types::{COctetString, OctetString};
use rusmpp::values::{
    DataCoding, EsmClass, InterfaceVersion, Npi, RegisteredDelivery, ServiceType, Ton,
};
use rusmpp::{CommandId, Pdu};
use rusmppc::{Client, ConnectionBuilder, Event};
use tokio::sync::{Mutex, broadcast};

use crate::{Error, Sent, SmppConfig, SmppVersion, Sms, SmsSender, text};

/// SMPP `command_status` values this crate names, and their classification.
pub mod status {
    pub const ESME_ROK: u32 = 0x0000_0000;
    pub const ESME_RINVMSGLEN: u32 = 0x0000_0001;
    pub const ESME_RINVBNDSTS: u32 = 0x0000_0004;
    pub const ESME_RSYSERR: u32 = 0x0000_0008;
    pub const ESME_RINVSRCADR: u32 = 0x0000_000A;
    pub const ESME_RINVDSTADR: u32 = 0x0000_000B;
    pub const ESME_RBINDFAIL: u32 = 0x0000_000D;
    pub const ESME_RINVPASWD: u32 = 0x0000_000E;
    pub const ESME_RINVSYSID: u32 = 0x0000_000F;
    pub const ESME_RMSGQFUL: u32 = 0x0000_0014;
    pub const ESME_RSUBMITFAIL: u32 = 0x0000_0045;
    pub const ESME_RTHROTTLED: u32 = 0x0000_0058;
    pub const ESME_RINVDCS: u32 = 0x0000_0104;

    /// The SMPP name of a status, e.g. `ESME_RTHROTTLED`, or its hex code.
    pub fn name(status: u32) -> String {
        let debug = format!("{:?}", rusmpp::CommandStatus::from(status));
        match debug.strip_prefix("Esme") {
            Some(rest) => format!("ESME_{}", rest.to_uppercase()),
            None => format!("0x{status:08X}"),
        }
    }

    /// True for a `submit_sm` error status that says the message itself can never be
    /// accepted (bad address, coding, length, flags, prohibited…). Throttling, queue
    /// full, system errors, bind state and unknown/vendor codes are transient.
    pub fn is_permanent(status: u32) -> bool {
        matches!(
            status,
            0x01 // RINVMSGLEN
            | 0x02 // RINVCMDLEN
            | 0x03 // RINVCMDID
            | 0x06 // RINVPRTFLG
            | 0x07 // RINVREGDLVFLG
            | 0x0A // RINVSRCADR
            | 0x0B // RINVDSTADR
            | 0x15 // RINVSERTYP
            | 0x33 // RINVNUMDESTS
            | 0x43 // RINVESMCLASS
            | 0x48 // RINVSRCTON
            | 0x49 // RINVSRCNPI
            | 0x50 // RINVDSTTON
            | 0x51 // RINVDSTNPI
            | 0x61 // RINVSCHED
            | 0x62 // RINVEXPIRY
            | 0x63 // RINVDFTMSGID
            | 0x65 // RX_P_APPN
            | 0x66 // RX_R_APPN
            | 0xC0
                ..=0xC4 // TLV errors
            | 0x100 // RSERTYPUNAUTH
            | 0x101 // RPROHIBITED
            | 0x103 // RSERTYPDENIED
            | 0x104 // RINVDCS
            | 0x105 // RINVSRCADDRSUBUNIT
            | 0x106 // RINVDSTADDRSUBUNIT
        )
    }
}

/// A delivery receipt the SMSC sent back (`deliver_sm` with `esm_class` "MC delivery
/// receipt"), parsed from the usual `id:… sub:… dlvrd:… submit date:… done date:…
/// stat:… err:… text:…` text and the `receipted_message_id` / `message_state` TLVs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryReceipt {
    /// The id `submit_sm_resp` returned (what [`Sent::message_id`] holds). Some SMSCs
    /// write it in another base (decimal vs hex) here; this crate does not guess.
    pub message_id: String,
    /// The final state as the SMSC spells it: `DELIVRD`, `UNDELIV`, `EXPIRED`,
    /// `REJECTD`, `DELETED`, `ACCEPTD`, `UNKNOWN`, `ENROUTE`…
    pub stat: String,
    /// The `err:` field, when present.
    pub err: Option<String>,
    /// The handset the receipt is about (the receipt's `source_addr`).
    pub handset: String,
    /// The receipt text as received.
    pub raw: String,
}

impl DeliveryReceipt {
    pub fn is_delivered(&self) -> bool {
        self.stat == "DELIVRD"
    }

    /// The receipt in a `deliver_sm`, or `None` when it is not a delivery receipt.
    pub fn from_deliver_sm(pdu: &DeliverSm) -> Option<Self> {
        let message_type = u8::from(pdu.esm_class) & 0b0011_1100;
        let tlv = |want: fn(&TlvValue) -> Option<String>| {
            pdu.tlvs().iter().find_map(|t| t.value().and_then(want))
        };
        let tlv_id = tlv(|v| match v {
            TlvValue::ReceiptedMessageId(id) => Some(id.as_str().to_owned()),
            _ => None,
        });
        if message_type != 0b0000_0100 && tlv_id.is_none() {
            return None;
        }
        let raw = text::decode(u8::from(pdu.data_coding), pdu.short_message().as_ref());
        let message_id = tlv_id.or_else(|| field(&raw, "id"))?;
        let stat = field(&raw, "stat")
            .or_else(|| {
                tlv(|v| match v {
                    TlvValue::MessageState(s) => Some(state_name(u8::from(*s)).to_owned()),
                    _ => None,
                })
            })
            .unwrap_or_else(|| "UNKNOWN".to_owned());
        Some(Self {
            message_id,
            stat,
            err: field(&raw, "err"),
            handset: pdu.source_addr.as_str().to_owned(),
            raw,
        })
    }
}

/// The value after `key:` (at the start or after a space), up to the next space.
fn field(text: &str, key: &str) -> Option<String> {
    let needle = format!("{key}:");
    let mut from = 0;
    while let Some(pos) = text[from..].find(&needle) {
        let at = from + pos;
        if at == 0 || text[..at].ends_with(' ') {
            let rest = &text[at + needle.len()..];
            let value = rest.split(' ').next().unwrap_or_default();
            return Some(value.to_owned());
        }
        from = at + needle.len();
    }
    None
}

fn state_name(state: u8) -> &'static str {
    match state {
        0 => "SCHEDULED",
        1 => "ENROUTE",
        2 => "DELIVRD",
        3 => "EXPIRED",
        4 => "DELETED",
        5 => "UNDELIV",
        6 => "ACCEPTD",
        8 => "REJECTD",
        9 => "SKIPPED",
        _ => "UNKNOWN",
    }
}

/// Sends SMS over SMPP.
///
/// * The TCP connection and bind happen on the first send and are kept. The bind is
///   `bind_transmitter`, or `bind_transceiver` when `registered_delivery` is on so
///   delivery receipts can come back ([`SmsSender::receipts`]).
/// * `enquire_link` keeps the session alive (rusmppc's built-in timer); incoming
///   `enquire_link` and `deliver_sm` are answered, an incoming `unbind` closes.
/// * When the session is gone, the next send reconnects. After a failed connection
///   attempt (connect, bind) further attempts wait `reconnect_min_ms`, doubling up to
///   `reconnect_max_ms`; until then a send fails at once with the transient
///   [`Error::SmppBackoff`].
/// * A send that fails because a reused session turned out broken is retried once on
///   a new session (the SMSC may then, rarely, get the message twice).
/// * Connect, bind and every response are bounded by the configured timeouts.
pub struct SmppSender {
    config: SmppConfig,
    bind: Bind,
    receipts: broadcast::Sender<DeliveryReceipt>,
    state: Mutex<State>,
}

impl std::fmt::Debug for SmppSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmppSender")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// The validated, encoded bind and source parameters (holds the password: no Debug).
struct Bind {
    system_id: COctetString<1, 16>,
    password: COctetString<1, 9>,
    system_type: COctetString<1, 13>,
    version: InterfaceVersion,
    source_addr: COctetString<1, 21>,
    source_ton: Ton,
    source_npi: Npi,
}

#[derive(Default)]
struct State {
    session: Option<Session>,
    generation: u64,
    failures: u32,
    retry: Option<(Instant, String)>,
}

struct Session {
    client: Client,
    generation: u64,
    events: tokio::task::JoinHandle<()>,
}

impl Drop for Session {
    fn drop(&mut self) {
        // The task holds a client handle; once it and ours are gone rusmppc's
        // connection task ends and closes the socket.
        self.events.abort();
    }
}

/// Why a submit failed, and whether the session must be dropped.
struct Failure {
    error: Error,
    drop_session: bool,
    /// A connection failure on a session that may simply have been stale.
    retry_on_new_session: bool,
}

impl Failure {
    fn keep(error: Error) -> Self {
        Self {
            error,
            drop_session: false,
            retry_on_new_session: false,
        }
    }

    fn reset(error: Error, retry_on_new_session: bool) -> Self {
        Self {
            error,
            drop_session: true,
            retry_on_new_session,
        }
    }
}

fn octets<const MIN: usize, const MAX: usize>(
    what: &str,
    value: &str,
) -> Result<COctetString<MIN, MAX>, Error> {
    COctetString::from_str(value).map_err(|_| {
        Error::Config(format!(
            "smpp {what} must be ASCII of at most {} characters",
            MAX - 1
        ))
    })
}

impl SmppSender {
    pub const NAME: &'static str = "smpp";

    /// Checks the configuration; connects on the first send.
    pub fn new(config: SmppConfig) -> Result<Self, Error> {
        if config.address.trim().is_empty() {
            return Err(Error::Config("smpp address is empty".to_owned()));
        }
        if config.system_id.is_empty() {
            return Err(Error::Config("smpp system_id is empty".to_owned()));
        }
        if config.connect_timeout_ms == 0 || config.response_timeout_ms == 0 {
            return Err(Error::Config(
                "smpp connect_timeout_ms and response_timeout_ms must be > 0".to_owned(),
            ));
        }
        if config.reconnect_min_ms > config.reconnect_max_ms {
            return Err(Error::Config(
                "smpp reconnect_min_ms must not exceed reconnect_max_ms".to_owned(),
            ));
        }
        let (source, ton, npi) = infer_source(&config.source_addr);
        if ton == Ton::Alphanumeric && source.chars().count() > 11 {
            return Err(Error::Config(format!(
                "smpp source_addr {:?}: an alphanumeric sender has at most 11 characters",
                config.source_addr
            )));
        }
        let bind = Bind {
            system_id: octets("system_id", &config.system_id)?,
            password: octets("password", config.password.expose())?,
            system_type: octets("system_type", &config.system_type)?,
            version: match config.interface_version {
                SmppVersion::V3_4 => InterfaceVersion::Smpp3_4,
                SmppVersion::V5_0 => InterfaceVersion::Smpp5_0,
            },
            source_addr: octets("source_addr", source)?,
            source_ton: config.source_ton.map_or(ton, Ton::from),
            source_npi: config.source_npi.map_or(npi, Npi::from),
        };
        let (receipts, _) = broadcast::channel(256);
        Ok(Self {
            config,
            bind,
            receipts,
            state: Mutex::new(State::default()),
        })
    }

    fn response_timeout(&self) -> Duration {
        Duration::from_millis(self.config.response_timeout_ms)
    }

    fn backoff(&self, failures: u32) -> Duration {
        let shift = failures.saturating_sub(1).min(30);
        let ms = self
            .config
            .reconnect_min_ms
            .saturating_mul(1u64 << shift)
            .min(self.config.reconnect_max_ms);
        Duration::from_millis(ms)
    }

    /// The current session's client, connecting when there is none. The flag is true
    /// when the session was opened by this call.
    async fn session(&self) -> Result<(Client, u64, bool), Error> {
        let mut state = self.state.lock().await;
        if let Some(session) = &state.session {
            if session.client.is_active() {
                return Ok((session.client.clone(), session.generation, false));
            }
            tracing::info!(address = %self.config.address, "SMPP session closed; reconnecting");
            state.session = None;
        }
        if let Some((at, last)) = &state.retry {
            let now = Instant::now();
            if now < *at {
                return Err(Error::SmppBackoff {
                    address: self.config.address.clone(),
                    retry_in: *at - now,
                    last: last.clone(),
                });
            }
        }
        state.generation += 1;
        let generation = state.generation;
        match self.open(generation).await {
            Ok(session) => {
                let client = session.client.clone();
                state.session = Some(session);
                state.failures = 0;
                state.retry = None;
                Ok((client, generation, true))
            }
            Err(error) => {
                state.failures = state.failures.saturating_add(1);
                let wait = self.backoff(state.failures);
                tracing::warn!(address = %self.config.address, %error, failures = state.failures, ?wait, "SMPP connection failed");
                state.retry = Some((Instant::now() + wait, error.to_string()));
                Err(error)
            }
        }
    }

    async fn invalidate(&self, generation: u64) {
        let mut state = self.state.lock().await;
        if state
            .session
            .as_ref()
            .is_some_and(|s| s.generation == generation)
        {
            state.session = None;
        }
    }

    /// Connects and binds.
    async fn open(&self, generation: u64) -> Result<Session, Error> {
        let address = &self.config.address;
        let connect_timeout = Duration::from_millis(self.config.connect_timeout_ms);
        let stream = match tokio::time::timeout(
            connect_timeout,
            tokio::net::TcpStream::connect(address.as_str()),
        )
        .await
        {
            Err(_) => {
                return Err(Error::Timeout {
                    what: "SMSC connect",
                    after: connect_timeout,
                });
            }
            Ok(Err(e)) => {
                return Err(Error::SmppConnection {
                    address: address.clone(),
                    reason: format!("connect: {e}"),
                });
            }
            Ok(Ok(stream)) => stream,
        };
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY");
        }
        let response_timeout = self.response_timeout();
        let enquire_link = (self.config.enquire_link_secs > 0)
            .then(|| Duration::from_secs(self.config.enquire_link_secs));
        let (client, events) = ConnectionBuilder::new()
            .response_timeout(response_timeout)
            .enquire_link_response_timeout(response_timeout)
            .with_enquire_link_interval(enquire_link)
            // 3.4 SMSCs are the norm; the PDUs used here are the same in 3.4 and 5.0.
            .disable_interface_version_check()
            .connected(stream);
        let events = tokio::spawn(handle_events(
            client.clone(),
            events,
            self.receipts.clone(),
            address.clone(),
        ));
        let session = Session {
            client,
            generation,
            events,
        };
        let b = &self.bind;
        // The two binds are distinct PDU types with the same fields.
        macro_rules! bind_pdu {
            ($pdu:ident) => {
                $pdu::builder()
                    .system_id(b.system_id.clone())
                    .password(b.password.clone())
                    .system_type(b.system_type.clone())
                    .interface_version(b.version)
                    .addr_ton(Ton::Unknown)
                    .addr_npi(Npi::Unknown)
                    .address_range(COctetString::empty())
                    .build()
            };
        }
        let bind = async {
            if self.config.registered_delivery {
                let pdu = bind_pdu!(BindTransceiver);
                session.client.bind_transceiver(pdu).await.map(|_| ())
            } else {
                let pdu = bind_pdu!(BindTransmitter);
                session.client.bind_transmitter(pdu).await.map(|_| ())
            }
        };
        let outer = response_timeout + Duration::from_secs(1);
        match tokio::time::timeout(outer, bind).await {
            Ok(Ok(())) => {
                tracing::info!(%address, system_id = %self.config.system_id, transceiver = self.config.registered_delivery, "SMPP bound");
                Ok(session)
            }
            Err(_) | Ok(Err(rusmppc::error::Error::ResponseTimeout { .. })) => {
                Err(Error::Timeout {
                    what: "SMPP bind",
                    after: response_timeout,
                })
            }
            Ok(Err(rusmppc::error::Error::UnexpectedResponse { response }))
                if response.status() != rusmpp::CommandStatus::EsmeRok =>
            {
                let status = u32::from(response.status());
                Err(Error::SmppBind {
                    address: address.clone(),
                    system_id: self.config.system_id.clone(),
                    status,
                    status_name: status::name(status),
                })
            }
            Ok(Err(e)) => Err(Error::SmppConnection {
                address: address.clone(),
                reason: format!("bind: {e}"),
            }),
        }
    }

    fn submit_sm(&self, sms: &Sms) -> Result<SubmitSm, Error> {
        let digits = text::e164_digits(&sms.to)?;
        let encoded = text::encode(&sms.text)?;
        let destination_addr = COctetString::from_str(digits)
            .map_err(|_| Error::InvalidDestination { to: sms.to.clone() })?;
        let short_message =
            OctetString::from_vec(encoded.octets).map_err(|e| Error::InvalidText(e.to_string()))?;
        let registered_delivery = if self.config.registered_delivery {
            // MC delivery receipt requested on success or failure.
            RegisteredDelivery::from(0x01)
        } else {
            RegisteredDelivery::default()
        };
        Ok(SubmitSm::builder()
            .service_type(ServiceType::default())
            .source_addr_ton(self.bind.source_ton)
            .source_addr_npi(self.bind.source_npi)
            .source_addr(self.bind.source_addr.clone())
            .dest_addr_ton(Ton::International)
            .dest_addr_npi(Npi::Isdn)
            .destination_addr(destination_addr)
            .esm_class(EsmClass::default())
            .registered_delivery(registered_delivery)
            .data_coding(DataCoding::from(encoded.data_coding))
            .short_message(short_message)
            .build())
    }

    async fn submit_on(&self, client: &Client, pdu: SubmitSm) -> Result<String, Failure> {
        let response_timeout = self.response_timeout();
        let outer = response_timeout + Duration::from_secs(1);
        let timeout = || Error::Timeout {
            what: "submit_sm",
            after: response_timeout,
        };
        match tokio::time::timeout(outer, client.submit_sm(pdu)).await {
            Ok(Ok(response)) => Ok(response.message_id().as_str().to_owned()),
            Err(_) | Ok(Err(rusmppc::error::Error::ResponseTimeout { .. })) => {
                Err(Failure::reset(timeout(), false))
            }
            Ok(Err(rusmppc::error::Error::UnexpectedResponse { response })) => {
                let status = u32::from(response.status());
                if status == status::ESME_ROK {
                    return Err(Failure::reset(
                        Error::SmppConnection {
                            address: self.config.address.clone(),
                            reason: format!("unexpected answer to submit_sm: {:?}", response.id()),
                        },
                        false,
                    ));
                }
                let error = Error::SmppRejected {
                    status,
                    status_name: status::name(status),
                };
                if status == status::ESME_RINVBNDSTS {
                    Err(Failure::reset(error, false))
                } else {
                    Err(Failure::keep(error))
                }
            }
            Ok(Err(e)) => Err(Failure::reset(
                Error::SmppConnection {
                    address: self.config.address.clone(),
                    reason: format!("submit_sm: {e}"),
                },
                true,
            )),
        }
    }

    async fn send_sms(&self, sms: &Sms) -> Result<Sent, Error> {
        let pdu = self.submit_sm(sms)?;
        let (client, mut generation, fresh) = self.session().await?;
        let mut result = self.submit_on(&client, pdu.clone()).await;
        if let Err(failure) = &result
            && failure.retry_on_new_session
            && !fresh
        {
            tracing::info!(error = %failure.error, "SMPP session was broken; retrying once on a new one");
            self.invalidate(generation).await;
            let (client, new_generation, _) = self.session().await?;
            generation = new_generation;
            result = self.submit_on(&client, pdu).await;
        }
        match result {
            Ok(message_id) => {
                tracing::info!(to = %sms.to, id = %message_id, "SMS accepted by the SMSC");
                Ok(Sent {
                    transport: Self::NAME,
                    message_id,
                })
            }
            Err(failure) => {
                if failure.drop_session {
                    self.invalidate(generation).await;
                }
                Err(failure.error)
            }
        }
    }

    /// Unbinds and closes the session, if any (bounded by the response timeout).
    pub async fn shutdown(&self) {
        let session = self.state.lock().await.session.take();
        if let Some(session) = session {
            let limit = self.response_timeout();
            if tokio::time::timeout(limit, session.client.unbind())
                .await
                .is_err()
            {
                tracing::debug!("SMPP unbind timed out");
            }
            let _ = tokio::time::timeout(limit, session.client.close_and_wait()).await;
        }
    }
}

fn infer_source(source: &str) -> (&str, Ton, Npi) {
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if source.is_empty() {
        (source, Ton::Unknown, Npi::Unknown)
    } else if let Some(rest) = source.strip_prefix('+')
        && digits(rest)
    {
        (rest, Ton::International, Npi::Isdn)
    } else if digits(source) {
        (source, Ton::Unknown, Npi::Isdn)
    } else {
        (source, Ton::Alphanumeric, Npi::Unknown)
    }
}

async fn handle_events(
    client: Client,
    mut events: impl futures::Stream<Item = Event> + Unpin,
    receipts: broadcast::Sender<DeliveryReceipt>,
    address: String,
) {
    while let Some(event) = events.next().await {
        match event {
            Event::Incoming(command) => {
                let sequence_number = command.sequence_number();
                match command.pdu() {
                    Some(Pdu::DeliverSm(pdu)) => {
                        if let Err(e) = client
                            .deliver_sm_resp(sequence_number, DeliverSmResp::default())
                            .await
                        {
                            tracing::debug!(error = %e, "cannot answer deliver_sm");
                        }
                        match DeliveryReceipt::from_deliver_sm(pdu) {
                            Some(receipt) => {
                                tracing::info!(id = %receipt.message_id, stat = %receipt.stat, "SMS delivery receipt");
                                // No subscriber is fine.
                                let _ = receipts.send(receipt);
                            }
                            None => tracing::info!("ignoring a mobile-originated SMS"),
                        }
                    }
                    _ if command.id() == CommandId::Unbind => {
                        tracing::info!(%address, "SMSC unbound");
                        let _ = client.unbind_resp(sequence_number).await;
                        let _ = client.close().await;
                    }
                    _ => tracing::debug!(id = ?command.id(), "ignoring an SMPP command"),
                }
            }
            Event::Error(e) => tracing::warn!(%address, error = %e, "SMPP connection error"),
        }
    }
    tracing::debug!(%address, "SMPP connection closed");
}

impl SmsSender for SmppSender {
    fn send<'a>(&'a self, sms: &'a Sms) -> BoxFuture<'a, Result<Sent, Error>> {
        Box::pin(self.send_sms(sms))
    }

    fn name(&self) -> &'static str {
        Self::NAME
    }

    fn receipts(&self) -> Option<broadcast::Receiver<DeliveryReceipt>> {
        self.config
            .registered_delivery
            .then(|| self.receipts.subscribe())
    }

    fn close<'a>(&'a self) -> BoxFuture<'a, ()> {
        Box::pin(self.shutdown())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_names_and_classes() {
        assert_eq!(status::name(status::ESME_RTHROTTLED), "ESME_RTHROTTLED");
        assert_eq!(status::name(0x0400), "0x00000400");
        assert!(!status::is_permanent(status::ESME_RTHROTTLED));
        assert!(!status::is_permanent(status::ESME_RMSGQFUL));
        assert!(!status::is_permanent(status::ESME_RSYSERR));
        assert!(status::is_permanent(status::ESME_RINVDSTADR));
        assert!(status::is_permanent(status::ESME_RINVDCS));
    }

    #[test]
    fn receipt_fields() {
        let t = "id:0A1B sub:001 dlvrd:001 submit date:2611231200 done date:2611231201 stat:DELIVRD err:000 text:Hello";
        assert_eq!(field(t, "id").as_deref(), Some("0A1B"));
        assert_eq!(field(t, "stat").as_deref(), Some("DELIVRD"));
        assert_eq!(field(t, "err").as_deref(), Some("000"));
        assert_eq!(field(t, "done date").as_deref(), Some("2611231201"));
    }

    #[test]
    fn source_inference() {
        assert_eq!(
            infer_source("IVAN"),
            ("IVAN", Ton::Alphanumeric, Npi::Unknown)
        );
        assert_eq!(
            infer_source("+420601123456"),
            ("420601123456", Ton::International, Npi::Isdn)
        );
        assert_eq!(infer_source("9000"), ("9000", Ton::Unknown, Npi::Isdn));
    }
}
