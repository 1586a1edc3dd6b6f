//! Webhook delivery: one JSON POST per message, with a timeout; redirects are
//! not followed (a 3xx is a failure), 2xx is success, 408/429/5xx and network
//! errors are retried, other 4xx are permanent. Headers follow Standard
//! Webhooks: `webhook-id`, `webhook-timestamp`, and `webhook-signature` when
//! the alert has secrets ([`super::sign`]).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use super::guard::{Guard, Resolver};
use super::{DeliverFuture, Delivery, Sink, SinkError};

/// Shared HTTP client for every webhook target.
#[derive(Clone)]
pub struct WebhookSink {
    client: reqwest::Client,
    resolver: Arc<Resolver>,
    timeout: Duration,
}

/// A client with the webhook settings; `pinned` sends a name to exactly
/// the addresses given instead of resolving it.
fn client(
    timeout: Duration,
    resolver: &Arc<Resolver>,
    pinned: Option<(&str, &[SocketAddr])>,
) -> Result<reqwest::Client, reqwest::Error> {
    let mut b = reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout)
        .redirect(reqwest::redirect::Policy::none())
        .dns_resolver(Arc::clone(resolver))
        .user_agent(concat!("sightline/", env!("CARGO_PKG_VERSION")));
    if let Some((host, addrs)) = pinned {
        b = b.resolve_to_addrs(host, addrs);
    }
    b.build()
}

impl WebhookSink {
    /// A client with this request timeout whose connections pass `guard`.
    pub fn new(timeout: Duration, guard: Arc<Guard>) -> Result<WebhookSink, reqwest::Error> {
        Self::with_resolver(timeout, Resolver::new(guard))
    }

    /// A client that resolves names with `resolver` (tests give it a hosts
    /// table) and passes its guard.
    pub fn with_resolver(
        timeout: Duration,
        resolver: Resolver,
    ) -> Result<WebhookSink, reqwest::Error> {
        let resolver = Arc::new(resolver);
        Ok(WebhookSink {
            client: client(timeout, &resolver, None)?,
            resolver,
            timeout,
        })
    }

    /// The sink for one callback URL.
    pub fn for_url(&self, url: &str) -> WebhookTarget {
        WebhookTarget {
            sink: self.clone(),
            url: url.to_string(),
        }
    }
}

/// One callback URL.
pub struct WebhookTarget {
    sink: WebhookSink,
    url: String,
}

impl WebhookTarget {
    /// The client for `url`. A name on the API's port is resolved here and
    /// refused if any address is local; the request then goes to exactly
    /// the addresses checked (a one-off client, in this rare case only).
    async fn client_for(&self, url: &reqwest::Url) -> Result<reqwest::Client, SinkError> {
        let guard = &self.sink.resolver.guard;
        if !guard.names_api_port(url) {
            return Ok(self.sink.client.clone());
        }
        let host = url.host_str().unwrap_or_default();
        let port = url.port_or_known_default().unwrap_or(0);
        let addrs = self
            .sink
            .resolver
            .lookup(host, port)
            .await
            .map_err(|e| SinkError::retry(format!("cannot resolve {host}: {e}")))?;
        if let Some(why) = addrs.iter().find_map(|a| guard.check(*a).err()) {
            return Err(SinkError::Permanent(format!(
                "refused: {host} resolves to {why}"
            )));
        }
        client(self.sink.timeout, &self.sink.resolver, Some((host, &addrs)))
            .map_err(|e| SinkError::retry(format!("building a client: {e}")))
    }
}

/// Whether a request error is the guard refusing the resolved addresses.
fn refused_by_guard(e: &reqwest::Error) -> Option<String> {
    let mut source: Option<&dyn std::error::Error> = Some(e);
    while let Some(s) = source {
        let text = s.to_string();
        if text.contains(" refused: ") && !text.contains("error sending request") {
            return Some(text);
        }
        source = s.source();
    }
    None
}

impl Sink for WebhookTarget {
    fn name(&self) -> String {
        format!("webhook {}", super::payload::redact(&self.url))
    }

    fn deliver<'a>(&'a self, d: &'a Delivery) -> DeliverFuture<'a> {
        Box::pin(async move {
            // Stable per (alert, occurrence, phase): the receiver's idempotency key.
            let id: &str = &d.message_id;
            let url = reqwest::Url::parse(&self.url)
                .map_err(|e| SinkError::Permanent(format!("bad callback URL: {e}")))?;
            if let Some(Err(why)) = self.sink.resolver.guard.check_url(&url) {
                return Err(SinkError::Permanent(format!("refused: {why}")));
            }
            let client = self.client_for(&url).await?;
            // The timestamp is this attempt's, so receivers can refuse replays.
            let now = chrono::Utc::now().timestamp();
            let mut req = client
                .post(&self.url)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .header("webhook-timestamp", now.to_string());
            if !d.secrets.is_empty() {
                req = req.header(
                    "webhook-signature",
                    super::sign::header(&d.secrets, id, now, &d.body),
                );
            }
            let resp = req
                .header("webhook-id", id)
                .body(d.body.to_vec())
                .send()
                .await
                .map_err(|e| match refused_by_guard(&e) {
                    Some(why) => SinkError::Permanent(why),
                    None => SinkError::retry(format!("POST failed: {e}")),
                })?;
            classify(
                resp.status(),
                resp.headers().get(reqwest::header::RETRY_AFTER),
            )
        })
    }
}

/// What a receiver's answer means for this message and this target.
pub fn classify(
    status: reqwest::StatusCode,
    retry_after: Option<&reqwest::header::HeaderValue>,
) -> Result<(), SinkError> {
    let code = status.as_u16();
    match code {
        200..=299 => Ok(()),
        410 => Err(SinkError::Gone(format!(
            "receiver answered {status} at {}",
            chrono::Utc::now().to_rfc3339()
        ))),
        // The receiver asks for time: its Retry-After is honoured.
        429 | 503 => Err(SinkError::Retry {
            message: format!("receiver answered {status}"),
            after: retry_after
                .and_then(|v| v.to_str().ok())
                .and_then(parse_retry_after),
        }),
        // Redirects are not followed: a moved endpoint is a failure to retry.
        300..=399 | 408 | 500..=599 => Err(SinkError::retry(format!("receiver answered {status}"))),
        _ => Err(SinkError::Permanent(format!("receiver answered {status}"))),
    }
}

/// `Retry-After` as seconds or as an HTTP date.
pub fn parse_retry_after(v: &str) -> Option<Duration> {
    let v = v.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = chrono::DateTime::parse_from_rfc2822(v).ok()?;
    let wait = when.with_timezone(&chrono::Utc) - chrono::Utc::now();
    Some(wait.to_std().unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;
    use reqwest::StatusCode;

    #[test]
    fn answers_are_classified() {
        assert!(classify(StatusCode::NO_CONTENT, None).is_ok());
        assert!(matches!(
            classify(StatusCode::GONE, None),
            Err(SinkError::Gone(_))
        ));
        assert!(matches!(
            classify(StatusCode::FOUND, None),
            Err(SinkError::Retry { .. })
        ));
        assert!(matches!(
            classify(StatusCode::BAD_GATEWAY, None),
            Err(SinkError::Retry { .. })
        ));
        assert!(matches!(
            classify(StatusCode::BAD_REQUEST, None),
            Err(SinkError::Permanent(_))
        ));
        let h = HeaderValue::from_static("7");
        match classify(StatusCode::TOO_MANY_REQUESTS, Some(&h)) {
            Err(SinkError::Retry { after, .. }) => assert_eq!(after, Some(Duration::from_secs(7))),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn retry_after_takes_seconds_or_a_date() {
        assert_eq!(parse_retry_after(" 120 "), Some(Duration::from_secs(120)));
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(Duration::ZERO),
            "past dates mean now"
        );
        let soon = (chrono::Utc::now() + chrono::Duration::seconds(30)).to_rfc2822();
        let d = parse_retry_after(&soon).expect("date");
        assert!(
            d > Duration::from_secs(25) && d <= Duration::from_secs(30),
            "{d:?}"
        );
        assert_eq!(parse_retry_after("soon"), None);
    }
}
