//! The SMPP transport against the in-process test SMSC (loopback only).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::Duration;

use sms_adapter::smpp::status;
use sms_adapter::testing::{BindKind, ClosedPort, Smsc, SmscOptions};
use sms_adapter::{Error, Secret, SmppConfig, SmppSender, Sms, SmsConfig, SmsSender, build};

const LIMIT: Duration = Duration::from_secs(20);
const TO: &str = "+420601123456";

/// Runs a test body with a hard time limit.
async fn bounded<F: std::future::Future<Output = ()>>(f: F) {
    tokio::time::timeout(LIMIT, f)
        .await
        .expect("test took too long");
}

async fn smsc() -> Smsc {
    Smsc::start(SmscOptions::default()).await.unwrap()
}

fn sender(config: SmppConfig) -> Arc<dyn SmsSender> {
    build(&SmsConfig::Smpp(config)).unwrap()
}

/// The error `sender` answers a message with `text` to `to` with.
async fn refused(sender: &Arc<dyn SmsSender>, to: &str, text: impl Into<String>) -> Error {
    sender.send(&Sms::new(to, text)).await.unwrap_err()
}

/// Waits (up to 2 s) until `done` holds; the assertion after it says what did not.
async fn eventually(done: impl Fn() -> bool) {
    for _ in 0..100 {
        if done() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `assert!(matches!(…))` that shows the value that did not match.
macro_rules! assert_is {
    ($value:expr, $pattern:pat) => {
        assert!(matches!($value, $pattern), "{:?}", $value)
    };
}

#[tokio::test]
async fn sends_gsm_safe_and_ucs2_texts() {
    bounded(async {
        let smsc = smsc().await;
        let sender = sender(smsc.smpp_config("IVAN"));
        assert_eq!(sender.name(), "smpp");
        assert!(sender.receipts().is_none());

        let a = sender
            .send(&Sms::new(TO, "Your code is 123456."))
            .await
            .unwrap();
        let b = sender.send(&Sms::new(TO, "Dobrý den")).await.unwrap();
        assert_eq!(a.transport, "smpp");
        assert_ne!(a.message_id, b.message_id);

        let got = smsc.wait_for(2, Duration::from_secs(5)).await.unwrap();
        assert_eq!(got[0].message_id, a.message_id);
        assert_eq!(got[0].text, "Your code is 123456.");
        assert_eq!(got[0].data_coding, 0);
        assert_eq!(got[0].destination_addr, "420601123456");
        assert_eq!((got[0].dest_ton, got[0].dest_npi), (1, 1));
        assert_eq!(got[0].source_addr, "IVAN");
        assert_eq!((got[0].source_ton, got[0].source_npi), (5, 0));
        assert_eq!(got[0].system_id, "ivan");
        assert_eq!(got[0].bind, BindKind::Transmitter);
        assert_eq!(got[0].registered_delivery, 0);

        assert_eq!(got[1].message_id, b.message_id);
        assert_eq!(got[1].text, "Dobrý den");
        assert_eq!(got[1].data_coding, 8);

        // One session for both.
        assert_eq!(smsc.bind_attempts(), 1);
    })
    .await;
}

#[tokio::test]
async fn wrong_password_is_a_clear_transient_error_with_backoff() {
    bounded(async {
        let smsc = smsc().await;
        let mut config = smsc.smpp_config("IVAN");
        config.password = Secret::new("wrong");
        config.reconnect_min_ms = 500;
        let sender = sender(config);

        let err = refused(&sender, TO, "hello").await;
        assert_is!(
            err,
            Error::SmppBind {
                status: status::ESME_RINVPASWD,
                ..
            }
        );
        assert!(err.to_string().contains("ESME_RINVPASWD"), "{err}");
        assert!(err.to_string().contains("\"ivan\""), "{err}");
        assert!(!err.is_permanent());
        assert_eq!(smsc.bind_attempts(), 1);

        // While in backoff, sends fail at once without touching the SMSC.
        let err = refused(&sender, TO, "hello").await;
        assert_is!(err, Error::SmppBackoff { .. });
        assert!(err.is_transient());
        assert_eq!(smsc.bind_attempts(), 1);

        // After the backoff, it tries again.
        tokio::time::sleep(Duration::from_millis(600)).await;
        let err = refused(&sender, TO, "hello").await;
        assert_is!(err, Error::SmppBind { .. });
        assert_eq!(smsc.bind_attempts(), 2);
        assert!(smsc.received().is_empty());
    })
    .await;
}

#[tokio::test]
async fn wrong_system_id_is_refused() {
    bounded(async {
        let smsc = smsc().await;
        let mut config = smsc.smpp_config("IVAN");
        config.system_id = "mallory".to_owned();
        let err = refused(&sender(config), TO, "hello").await;
        assert_is!(
            err,
            Error::SmppBind {
                status: status::ESME_RINVSYSID,
                ..
            }
        );
    })
    .await;
}

#[tokio::test]
async fn invalid_messages_are_permanent_and_never_reach_the_smsc() {
    bounded(async {
        let smsc = smsc().await;
        let sender = sender(smsc.smpp_config("IVAN"));

        let err = refused(&sender, TO, "a".repeat(161)).await;
        assert_is!(
            err,
            Error::TextTooLong {
                len: 161,
                max: 160,
                ..
            }
        );
        assert!(err.is_permanent());

        let err = refused(&sender, TO, "ř".repeat(71)).await;
        assert_is!(
            err,
            Error::TextTooLong {
                len: 71,
                max: 70,
                ..
            }
        );
        assert!(err.is_permanent());

        let err = refused(&sender, "601123456", "hello").await;
        assert_is!(err, Error::InvalidDestination { .. });
        assert!(err.is_permanent());

        assert_eq!(smsc.bind_attempts(), 0);

        // The longest texts that fit do go.
        sender.send(&Sms::new(TO, "a".repeat(160))).await.unwrap();
        sender.send(&Sms::new(TO, "ř".repeat(70))).await.unwrap();
        smsc.wait_for(2, Duration::from_secs(5)).await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn throttling_is_transient_and_bad_address_permanent() {
    bounded(async {
        let smsc = smsc().await;
        let sender = sender(smsc.smpp_config("IVAN"));

        smsc.fail_next(1, status::ESME_RTHROTTLED);
        let err = refused(&sender, TO, "one").await;
        assert_is!(
            err,
            Error::SmppRejected {
                status: status::ESME_RTHROTTLED,
                ..
            }
        );
        assert!(err.to_string().contains("ESME_RTHROTTLED"), "{err}");
        assert!(err.is_transient());

        // The retry succeeds, on the same session.
        sender.send(&Sms::new(TO, "one")).await.unwrap();
        assert_eq!(smsc.bind_attempts(), 1);

        smsc.fail_next(1, status::ESME_RMSGQFUL);
        let err = refused(&sender, TO, "two").await;
        assert!(err.is_transient(), "{err:?}");

        smsc.fail_next(1, status::ESME_RINVDSTADR);
        let err = refused(&sender, TO, "three").await;
        assert!(err.is_permanent(), "{err:?}");

        let got = smsc.wait_for(1, Duration::from_secs(5)).await.unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(smsc.bind_attempts(), 1);
    })
    .await;
}

#[tokio::test]
async fn reconnects_after_the_smsc_drops_the_connection() {
    bounded(async {
        let smsc = smsc().await;
        let sender = sender(smsc.smpp_config("IVAN"));
        sender.send(&Sms::new(TO, "before")).await.unwrap();
        assert_eq!(smsc.connections(), 1);

        // Immediately after the drop: the client may not have noticed yet.
        smsc.drop_connections();
        sender.send(&Sms::new(TO, "right after")).await.unwrap();
        assert_eq!(smsc.bind_attempts(), 2);

        // After the client noticed.
        smsc.drop_connections();
        tokio::time::sleep(Duration::from_millis(200)).await;
        sender.send(&Sms::new(TO, "later")).await.unwrap();
        assert_eq!(smsc.bind_attempts(), 3);

        let texts: Vec<String> = smsc
            .wait_for(3, Duration::from_secs(5))
            .await
            .unwrap()
            .into_iter()
            .map(|r| r.text)
            .collect();
        assert_eq!(texts, ["before", "right after", "later"]);
    })
    .await;
}

#[tokio::test]
async fn unreachable_smsc_fails_fast_during_backoff() {
    bounded(async {
        // A port nobody listens on, held so that no SMSC can be given it.
        let closed = ClosedPort::new().unwrap();
        let smsc = smsc().await;
        let mut config = smsc.smpp_config("IVAN");
        config.address = format!("127.0.0.1:{}", closed.port());
        config.reconnect_min_ms = 10_000;
        config.reconnect_max_ms = 10_000;
        let sender = sender(config);

        let err = refused(&sender, TO, "hello").await;
        assert_is!(err, Error::SmppConnection { .. });
        assert!(err.is_transient());

        let started = std::time::Instant::now();
        let err = refused(&sender, TO, "hello").await;
        assert_is!(err, Error::SmppBackoff { .. });
        assert!(started.elapsed() < Duration::from_secs(1));
    })
    .await;
}

#[tokio::test]
async fn delivery_receipts_come_back_on_a_transceiver_bind() {
    bounded(async {
        let smsc = smsc().await;
        let mut config = smsc.smpp_config("+420700000000");
        config.registered_delivery = true;
        let sender = sender(config);
        let mut receipts = sender
            .receipts()
            .expect("receipts with registered_delivery");

        let sent = sender.send(&Sms::new(TO, "Váš kód: 123456")).await.unwrap();
        let receipt = tokio::time::timeout(Duration::from_secs(5), receipts.recv())
            .await
            .expect("no receipt in time")
            .unwrap();
        assert_eq!(receipt.message_id, sent.message_id);
        assert_eq!(receipt.stat, "DELIVRD");
        assert!(receipt.is_delivered());
        assert_eq!(receipt.err.as_deref(), Some("000"));
        assert_eq!(receipt.handset, "420601123456");

        let got = smsc.received();
        assert_eq!(got[0].bind, BindKind::Transceiver);
        assert_eq!(got[0].registered_delivery, 1);
        assert_eq!(got[0].source_addr, "420700000000");
        assert_eq!((got[0].source_ton, got[0].source_npi), (1, 1));

        // The client acknowledged the deliver_sm.
        eventually(|| smsc.receipts() == (1, 1)).await;
        assert_eq!(smsc.receipts(), (1, 1));
    })
    .await;
}

#[tokio::test]
async fn close_unbinds_and_a_later_send_reconnects() {
    bounded(async {
        let smsc = smsc().await;
        let sender = sender(smsc.smpp_config("IVAN"));
        sender.send(&Sms::new(TO, "one")).await.unwrap();
        assert_eq!(smsc.connections(), 1);
        sender.close().await;
        eventually(|| smsc.connections() == 0).await;
        assert_eq!(smsc.connections(), 0);
        sender.send(&Sms::new(TO, "two")).await.unwrap();
        assert_eq!(smsc.bind_attempts(), 2);
    })
    .await;
}

#[tokio::test]
async fn keeps_the_session_alive_with_enquire_link() {
    bounded(async {
        let smsc = smsc().await;
        let mut config = smsc.smpp_config("IVAN");
        config.enquire_link_secs = 1;
        config.response_timeout_ms = 500;
        let sender = sender(config);
        sender.send(&Sms::new(TO, "one")).await.unwrap();
        // Several enquire_link rounds; a missing answer would close the session.
        tokio::time::sleep(Duration::from_millis(2_500)).await;
        sender.send(&Sms::new(TO, "two")).await.unwrap();
        assert_eq!(smsc.bind_attempts(), 1);
    })
    .await;
}

#[tokio::test]
async fn smsc_toml_snippet_parses_to_its_config() {
    let smsc = smsc().await;
    let parsed: SmsConfig = toml::from_str(&smsc.smpp_toml("IVAN")).unwrap();
    assert_eq!(parsed, SmsConfig::Smpp(smsc.smpp_config("IVAN")));
}

#[tokio::test]
async fn config_errors_and_redaction() {
    let smsc = smsc().await;
    let mut config = smsc.smpp_config("IVAN");
    config.password = Secret::new("123456789"); // SMPP passwords have at most 8 characters
    let err = SmppSender::new(config).unwrap_err();
    assert_is!(err, Error::Config(_));
    assert!(err.is_permanent());

    let mut config = smsc.smpp_config("ALPHANUMERIC12");
    config.password = Secret::new("pw-0815");
    assert!(SmppSender::new(config.clone()).is_err());
    config.source_addr = "IVAN".to_owned();
    let sender = SmppSender::new(config).unwrap();
    assert!(!format!("{sender:?}").contains("pw-0815"));
}

#[tokio::test]
async fn dropping_the_smsc_closes_client_sessions() {
    bounded(async {
        let smsc = smsc().await;
        let config = smsc.smpp_config("IVAN");
        let sender = sender(config);
        sender.send(&Sms::new(TO, "one")).await.unwrap();
        drop(smsc);
        tokio::time::sleep(Duration::from_millis(100)).await;
        let err = refused(&sender, TO, "two").await;
        assert!(err.is_transient(), "{err:?}");
    })
    .await;
}
