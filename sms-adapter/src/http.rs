//! The HTTP gateway transport.

use std::time::Duration;

use futures::future::BoxFuture;
use serde::Serialize;

use crate::{Error, HttpGatewayConfig, Sent, Sms, SmsSender, text};

/// The most of a gateway's answer that is read.
const MAX_RESPONSE_BYTES: usize = 64 * 1024;
/// The most of an error answer quoted in [`Error::HttpStatus`].
const MAX_QUOTED_CHARS: usize = 200;

/// Sends each message as `POST url` with the JSON body
/// `{"to": "+420…", "text": "…", "from": "…"}` (`from` only when configured) and
/// `Authorization: Bearer …` when a token is configured.
///
/// A 2xx answer must be JSON with a string or number `id` (or `message_id`). 4xx
/// answers are permanent errors except 408 and 429; 5xx, 408, 429, timeouts and
/// connection failures are transient. Redirects are not followed; at most 64 KiB of
/// an answer is read.
#[derive(Debug)]
pub struct HttpGateway {
    client: reqwest::Client,
    url: reqwest::Url,
    config: HttpGatewayConfig,
}

#[derive(Serialize)]
struct Request<'a> {
    to: &'a str,
    text: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    from: Option<&'a str>,
}

impl HttpGateway {
    pub const NAME: &'static str = "http_gateway";

    pub fn new(config: HttpGatewayConfig) -> Result<Self, Error> {
        let url = reqwest::Url::parse(&config.url)
            .map_err(|e| Error::Config(format!("http_gateway url {:?}: {e}", config.url)))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(Error::Config(format!(
                "http_gateway url {:?}: expected http:// or https://",
                config.url
            )));
        }
        if config.timeout_ms == 0 {
            return Err(Error::Config(
                "http_gateway timeout_ms must be > 0".to_owned(),
            ));
        }
        if let Some(token) = &config.bearer_token
            && reqwest::header::HeaderValue::from_str(&format!("Bearer {}", token.expose()))
                .is_err()
        {
            return Err(Error::Config(
                "http_gateway bearer_token has characters not allowed in a header".to_owned(),
            ));
        }
        let timeout = Duration::from_millis(config.timeout_ms);
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(timeout)
            .connect_timeout(timeout)
            .build()
            .map_err(|e| Error::Config(format!("http_gateway client: {e}")))?;
        Ok(Self {
            client,
            url,
            config,
        })
    }

    async fn post(&self, sms: &Sms) -> Result<Sent, Error> {
        text::check(sms)?;
        let mut request = self.client.post(self.url.clone()).json(&Request {
            to: &sms.to,
            text: &sms.text,
            from: self.config.from.as_deref(),
        });
        if let Some(token) = &self.config.bearer_token {
            request = request.bearer_auth(token.expose());
        }
        let timeout = Duration::from_millis(self.config.timeout_ms);
        let mut response = request
            .send()
            .await
            .map_err(|e| transport_error(e, timeout))?;
        let status = response.status();
        let body = read_bounded(&mut response, timeout).await?;
        if !status.is_success() {
            let text = String::from_utf8_lossy(&body);
            let mut quoted: String = text.chars().take(MAX_QUOTED_CHARS).collect();
            if text.chars().nth(MAX_QUOTED_CHARS).is_some() {
                quoted.push('…');
            }
            return Err(Error::HttpStatus {
                status: status.as_u16(),
                body: quoted,
            });
        }
        let message_id = message_id(&body)?;
        tracing::info!(to = %sms.to, id = %message_id, "SMS accepted by the HTTP gateway");
        Ok(Sent {
            transport: Self::NAME,
            message_id,
        })
    }
}

fn transport_error(e: reqwest::Error, timeout: Duration) -> Error {
    if e.is_timeout() {
        Error::Timeout {
            what: "SMS gateway request",
            after: timeout,
        }
    } else {
        // Without the URL (it may carry credentials in its query).
        Error::Http(e.without_url().to_string())
    }
}

async fn read_bounded(
    response: &mut reqwest::Response,
    timeout: Duration,
) -> Result<Vec<u8>, Error> {
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| transport_error(e, timeout))?
    {
        let room = MAX_RESPONSE_BYTES - body.len();
        if chunk.len() > room {
            body.extend_from_slice(&chunk[..room]);
            break;
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

fn message_id(body: &[u8]) -> Result<String, Error> {
    let value: serde_json::Value = serde_json::from_slice(body)
        .map_err(|e| Error::HttpResponse(format!("its body is not JSON: {e}")))?;
    let id = ["id", "message_id"]
        .iter()
        .find_map(|k| match value.get(k) {
            Some(serde_json::Value::String(s)) if !s.is_empty() => Some(s.clone()),
            Some(serde_json::Value::Number(n)) => Some(n.to_string()),
            _ => None,
        });
    id.ok_or_else(|| Error::HttpResponse("its JSON has no \"id\" or \"message_id\"".to_owned()))
}

impl SmsSender for HttpGateway {
    fn send<'a>(&'a self, sms: &'a Sms) -> BoxFuture<'a, Result<Sent, Error>> {
        Box::pin(self.post(sms))
    }

    fn name(&self) -> &'static str {
        Self::NAME
    }
}
