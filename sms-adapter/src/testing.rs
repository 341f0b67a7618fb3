//! A small SMSC for tests of this and other crates (feature `testing`), built on the
//! `rusmpp` codec: a Tokio TCP server on `127.0.0.1:0`.
//!
//! It accepts `bind_transmitter` / `bind_receiver` / `bind_transceiver` with the
//! configured credentials (a wrong `system_id` gets `ESME_RINVSYSID`, a wrong password
//! `ESME_RINVPASWD`), answers `enquire_link` and `unbind`, answers `submit_sm` with a
//! fresh message id and records it ([`Smsc::received`], [`Smsc::wait_for`]), and —
//! when the message asked for a delivery receipt and the bind is a transceiver — sends
//! a `deliver_sm` receipt (`id:… stat:DELIVRD …`) right after the `submit_sm_resp`.
//!
//! Fault knobs: [`Smsc::fail_next`] answers the next submits with an error status;
//! [`Smsc::drop_connections`] closes every open connection.
//!
//! Dropping the [`Smsc`] stops it: the accept loop and every connection task are
//! aborted, so nothing outlives it.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use sms_adapter::testing::{Smsc, SmscOptions};
//! let smsc = Smsc::start(SmscOptions::default()).await?;
//! let config = smsc.smpp_config("IVAN"); // or point a binary at smsc.addr()
//! # Ok(()) }
//! ```

use std::collections::HashMap;
use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use rusmpp::command::CommandParts;
use rusmpp::pdus::{
    BindReceiverResp, BindTransceiverResp, BindTransmitterResp, DeliverSm, SubmitSm, SubmitSmResp,
};
use rusmpp::tlvs::MessageDeliveryRequestTlvValue;
use rusmpp::tokio_codec::CommandCodec;
use rusmpp::types::{COctetString, OctetString};
use rusmpp::values::{DataCoding, EsmClass, MessageState, Npi, Ton};
use rusmpp::{Command, CommandId, CommandStatus, Pdu};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::{AbortHandle, JoinHandle};
use tokio_util::codec::Framed;

use crate::smpp::status;
use crate::{Secret, SmppConfig, SmppVersion, text};

/// How to start an [`Smsc`].
#[derive(Debug, Clone)]
pub struct SmscOptions {
    /// The `system_id` binds must use.
    pub system_id: String,
    /// The password binds must use (SMPP: at most 8 characters).
    pub password: String,
    /// The `system_id` the SMSC names itself in bind responses.
    pub smsc_id: String,
}

impl Default for SmscOptions {
    fn default() -> Self {
        Self {
            system_id: "ivan".to_owned(),
            password: "secret".to_owned(),
            smsc_id: "TESTSMSC".to_owned(),
        }
    }
}

/// How a connection was bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BindKind {
    Transmitter,
    Receiver,
    Transceiver,
}

/// One `submit_sm` the SMSC accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    /// The `system_id` of the session it came in on.
    pub system_id: String,
    pub bind: BindKind,
    pub source_addr: String,
    pub source_ton: u8,
    pub source_npi: u8,
    pub destination_addr: String,
    pub dest_ton: u8,
    pub dest_npi: u8,
    pub data_coding: u8,
    pub registered_delivery: u8,
    /// The `short_message` decoded by its data coding (UCS-2 or Latin-1).
    pub text: String,
    /// The id given in `submit_sm_resp`.
    pub message_id: String,
}

/// A running test SMSC; stops when dropped.
#[derive(Debug)]
pub struct Smsc {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept: JoinHandle<()>,
}

#[derive(Debug)]
struct Shared {
    options: SmscOptions,
    state: Mutex<State>,
    /// The number of received messages, for `wait_for`.
    count: watch::Sender<usize>,
    next_message_id: AtomicU64,
}

#[derive(Debug, Default)]
struct State {
    received: Vec<Received>,
    fail_next: u32,
    fail_status: u32,
    bind_attempts: usize,
    receipts_sent: usize,
    receipts_acked: usize,
    connections: HashMap<u64, AbortHandle>,
    next_connection: u64,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Smsc {
    /// Listens on `127.0.0.1:0` and serves in background tasks.
    pub async fn start(options: SmscOptions) -> std::io::Result<Smsc> {
        let listener = TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, 0)).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            options,
            state: Mutex::new(State::default()),
            count: watch::Sender::new(0),
            next_message_id: AtomicU64::new(1),
        });
        let accept = tokio::spawn(accept_loop(listener, shared.clone()));
        Ok(Smsc {
            addr,
            shared,
            accept,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn options(&self) -> &SmscOptions {
        &self.shared.options
    }

    /// An [`SmppConfig`] pointing at this SMSC with its credentials, short timeouts
    /// and a 100 ms–1 s reconnect backoff.
    pub fn smpp_config(&self, source_addr: &str) -> SmppConfig {
        SmppConfig {
            address: self.addr.to_string(),
            system_id: self.shared.options.system_id.clone(),
            password: Secret::new(self.shared.options.password.clone()),
            system_type: String::new(),
            source_addr: source_addr.to_owned(),
            source_ton: None,
            source_npi: None,
            registered_delivery: false,
            enquire_link_secs: 30,
            connect_timeout_ms: 2_000,
            response_timeout_ms: 2_000,
            reconnect_min_ms: 100,
            reconnect_max_ms: 1_000,
            interface_version: SmppVersion::V3_4,
        }
    }

    /// The same configuration as [`Smsc::smpp_config`], as TOML keys (with
    /// `transport = "smpp"`) to put under the table a binary reads its SMS settings from.
    pub fn smpp_toml(&self, source_addr: &str) -> String {
        let c = self.smpp_config(source_addr);
        format!(
            "transport = \"smpp\"\naddress = {:?}\nsystem_id = {:?}\npassword = {:?}\n\
             source_addr = {:?}\nconnect_timeout_ms = {}\nresponse_timeout_ms = {}\n\
             reconnect_min_ms = {}\nreconnect_max_ms = {}\n",
            c.address,
            c.system_id,
            c.password.expose(),
            c.source_addr,
            c.connect_timeout_ms,
            c.response_timeout_ms,
            c.reconnect_min_ms,
            c.reconnect_max_ms,
        )
    }

    /// Every message received so far, in order.
    pub fn received(&self) -> Vec<Received> {
        self.shared.lock().received.clone()
    }

    /// Waits until at least `n` messages were received; all received messages then,
    /// or a `TimedOut` error.
    pub async fn wait_for(&self, n: usize, timeout: Duration) -> std::io::Result<Vec<Received>> {
        let mut count = self.shared.count.subscribe();
        match tokio::time::timeout(timeout, count.wait_for(|c| *c >= n)).await {
            Ok(Ok(_)) => Ok(self.received()),
            _ => Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!(
                    "test SMSC: {} message(s) received, {n} expected within {timeout:?}",
                    self.shared.lock().received.len()
                ),
            )),
        }
    }

    /// Answers the next `n` `submit_sm` with `command_status` (e.g.
    /// [`status::ESME_RTHROTTLED`]) instead of accepting them.
    pub fn fail_next(&self, n: u32, command_status: u32) {
        let mut state = self.shared.lock();
        state.fail_next = n;
        state.fail_status = command_status;
    }

    /// Closes every open connection (no unbind), as a crashing SMSC or a broken
    /// network would.
    pub fn drop_connections(&self) {
        let connections: Vec<AbortHandle> = self
            .shared
            .lock()
            .connections
            .drain()
            .map(|(_, h)| h)
            .collect();
        for c in connections {
            c.abort();
        }
    }

    /// Connections currently open.
    pub fn connections(&self) -> usize {
        self.shared
            .lock()
            .connections
            .values()
            .filter(|h| !h.is_finished())
            .count()
    }

    /// Bind requests received, successful or not.
    pub fn bind_attempts(&self) -> usize {
        self.shared.lock().bind_attempts
    }

    /// Delivery receipts sent, and how many the client acknowledged.
    pub fn receipts(&self) -> (usize, usize) {
        let state = self.shared.lock();
        (state.receipts_sent, state.receipts_acked)
    }
}

impl Drop for Smsc {
    fn drop(&mut self) {
        self.accept.abort();
        self.drop_connections();
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                tracing::debug!(error = %e, "test SMSC accept failed");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        // Registered under the lock, so the task cannot deregister before it is in.
        let mut state = shared.lock();
        let id = state.next_connection;
        state.next_connection += 1;
        let task = tokio::spawn(serve(shared.clone(), stream, id));
        state.connections.insert(id, task.abort_handle());
    }
}

async fn serve(shared: Arc<Shared>, stream: TcpStream, id: u64) {
    let mut framed = Framed::new(stream, CommandCodec::new());
    let mut session = Session {
        shared: &shared,
        bound: None,
        next_sequence: 1,
    };
    while let Some(frame) = framed.next().await {
        let Ok(command) = frame else {
            break;
        };
        let (replies, close) = session.handle(command);
        for reply in replies {
            if framed.send(reply).await.is_err() {
                break;
            }
        }
        if close {
            break;
        }
    }
    shared.lock().connections.remove(&id);
}

struct Session<'a> {
    shared: &'a Shared,
    bound: Option<(String, BindKind)>,
    next_sequence: u32,
}

/// A response with no body, as SMSCs send for errors.
fn bare(id: CommandId, status: u32, sequence_number: u32) -> Command {
    Command::from_parts(CommandParts::new(
        id,
        CommandStatus::from(status),
        sequence_number,
        None,
    ))
}

fn cstr<const MIN: usize, const MAX: usize>(s: &str) -> COctetString<MIN, MAX> {
    let ascii: String = s
        .chars()
        .filter(|c| c.is_ascii() && *c != '\0')
        .take(MAX - 1)
        .collect();
    COctetString::from_str(&ascii).unwrap_or_default()
}

impl Session<'_> {
    fn handle(&mut self, command: Command) -> (Vec<Command>, bool) {
        let seq = command.sequence_number();
        let ok = CommandStatus::EsmeRok;
        match command.pdu() {
            Some(Pdu::BindTransmitter(b)) => self.bind(
                seq,
                BindKind::Transmitter,
                b.system_id.as_str(),
                b.password.as_str(),
            ),
            Some(Pdu::BindReceiver(b)) => self.bind(
                seq,
                BindKind::Receiver,
                b.system_id.as_str(),
                b.password.as_str(),
            ),
            Some(Pdu::BindTransceiver(b)) => self.bind(
                seq,
                BindKind::Transceiver,
                b.system_id.as_str(),
                b.password.as_str(),
            ),
            Some(Pdu::EnquireLink) => (vec![Command::new(ok, seq, Pdu::EnquireLinkResp)], false),
            Some(Pdu::Unbind) => (vec![Command::new(ok, seq, Pdu::UnbindResp)], true),
            Some(Pdu::SubmitSm(submit)) => (self.submit(seq, submit), false),
            Some(Pdu::DeliverSmResp(_)) => {
                self.shared.lock().receipts_acked += 1;
                (vec![], false)
            }
            _ if command.id() == CommandId::DeliverSmResp => {
                self.shared.lock().receipts_acked += 1;
                (vec![], false)
            }
            _ if matches!(
                command.id(),
                CommandId::EnquireLinkResp | CommandId::GenericNack
            ) =>
            {
                (vec![], false)
            }
            _ => (
                vec![bare(CommandId::GenericNack, 0x03, seq)], // ESME_RINVCMDID
                false,
            ),
        }
    }

    fn bind(
        &mut self,
        seq: u32,
        kind: BindKind,
        system_id: &str,
        password: &str,
    ) -> (Vec<Command>, bool) {
        let options = &self.shared.options;
        self.shared.lock().bind_attempts += 1;
        let resp_id = match kind {
            BindKind::Transmitter => CommandId::BindTransmitterResp,
            BindKind::Receiver => CommandId::BindReceiverResp,
            BindKind::Transceiver => CommandId::BindTransceiverResp,
        };
        let status = if self.bound.is_some() {
            0x05 // ESME_RALYBND
        } else if system_id != options.system_id {
            status::ESME_RINVSYSID
        } else if password != options.password {
            status::ESME_RINVPASWD
        } else {
            status::ESME_ROK
        };
        if status != status::ESME_ROK {
            return (vec![bare(resp_id, status, seq)], false);
        }
        self.bound = Some((system_id.to_owned(), kind));
        let smsc_id = cstr(&options.smsc_id);
        let pdu = match kind {
            BindKind::Transmitter => {
                Pdu::from(BindTransmitterResp::builder().system_id(smsc_id).build())
            }
            BindKind::Receiver => Pdu::from(BindReceiverResp::builder().system_id(smsc_id).build()),
            BindKind::Transceiver => {
                Pdu::from(BindTransceiverResp::builder().system_id(smsc_id).build())
            }
        };
        (vec![Command::new(CommandStatus::EsmeRok, seq, pdu)], false)
    }

    fn submit(&mut self, seq: u32, submit: &SubmitSm) -> Vec<Command> {
        let Some((system_id, kind)) = self.bound.clone() else {
            return vec![bare(CommandId::SubmitSmResp, status::ESME_RINVBNDSTS, seq)];
        };
        if kind == BindKind::Receiver {
            return vec![bare(CommandId::SubmitSmResp, status::ESME_RINVBNDSTS, seq)];
        }
        {
            let mut state = self.shared.lock();
            if state.fail_next > 0 {
                state.fail_next -= 1;
                return vec![bare(CommandId::SubmitSmResp, state.fail_status, seq)];
            }
        }
        let n = self.shared.next_message_id.fetch_add(1, Ordering::Relaxed);
        let message_id = format!("{n:08X}");
        let data_coding = u8::from(submit.data_coding);
        let registered_delivery = u8::from(submit.registered_delivery);
        let text = text::decode(data_coding, submit.short_message().as_ref());
        let received = Received {
            system_id,
            bind: kind,
            source_addr: submit.source_addr.as_str().to_owned(),
            source_ton: u8::from(submit.source_addr_ton),
            source_npi: u8::from(submit.source_addr_npi),
            destination_addr: submit.destination_addr.as_str().to_owned(),
            dest_ton: u8::from(submit.dest_addr_ton),
            dest_npi: u8::from(submit.dest_addr_npi),
            data_coding,
            registered_delivery,
            text: text.clone(),
            message_id: message_id.clone(),
        };
        let mut replies = vec![Command::new(
            CommandStatus::EsmeRok,
            seq,
            SubmitSmResp::builder()
                .message_id(cstr(&message_id))
                .build(),
        )];
        let wants_receipt = registered_delivery & 0b11 != 0;
        if wants_receipt && kind == BindKind::Transceiver {
            replies.push(self.receipt(submit, &message_id, &text));
        }
        {
            let mut state = self.shared.lock();
            state.received.push(received);
            if wants_receipt && kind == BindKind::Transceiver {
                state.receipts_sent += 1;
            }
            let count = state.received.len();
            self.shared.count.send_replace(count);
        }
        replies
    }

    fn receipt(&mut self, submit: &SubmitSm, message_id: &str, text: &str) -> Command {
        let now = chrono::Utc::now().format("%y%m%d%H%M");
        let excerpt: String = text
            .chars()
            .filter(|c| c.is_ascii() && !c.is_ascii_control())
            .take(20)
            .collect();
        let body = format!(
            "id:{message_id} sub:001 dlvrd:001 submit date:{now} done date:{now} stat:DELIVRD err:000 text:{excerpt}"
        );
        let deliver = DeliverSm::builder()
            .source_addr_ton(Ton::International)
            .source_addr_npi(Npi::Isdn)
            .source_addr(submit.destination_addr.clone())
            .dest_addr_ton(submit.source_addr_ton)
            .dest_addr_npi(submit.source_addr_npi)
            .destination_addr(submit.source_addr.clone())
            .esm_class(EsmClass::from(0x04))
            .data_coding(DataCoding::McSpecific)
            .short_message(OctetString::from_str(&body).unwrap_or_default())
            .push_tlv(MessageDeliveryRequestTlvValue::ReceiptedMessageId(cstr(
                message_id,
            )))
            .push_tlv(MessageDeliveryRequestTlvValue::MessageState(
                MessageState::Delivered,
            ))
            .build();
        let seq = self.next_sequence;
        self.next_sequence = self.next_sequence.wrapping_add(1);
        Command::new(CommandStatus::EsmeRok, seq, deliver)
    }
}

/// A loopback port nobody listens on, reserved for as long as this value lives:
/// the socket is bound but never listens, so a connection to it is refused at once,
/// and no other test in the process (an [`Smsc`], an HTTP peer) can be given the
/// same port while it is held. A port from a listener that was bound and dropped is
/// not safe for this: the next `bind("127.0.0.1:0")` may get it back.
#[derive(Debug)]
pub struct ClosedPort {
    _socket: tokio::net::TcpSocket,
    port: u16,
}

impl ClosedPort {
    pub fn new() -> std::io::Result<Self> {
        let socket = tokio::net::TcpSocket::new_v4()?;
        socket.bind(SocketAddr::from(([127, 0, 0, 1], 0)))?;
        let port = socket.local_addr()?.port();
        Ok(Self {
            _socket: socket,
            port,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }
}
