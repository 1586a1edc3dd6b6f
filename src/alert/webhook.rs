//! Webhook delivery: one JSON POST per message, with a timeout; redirects are
//! not followed (a 3xx is a failure), 2xx is success, 408/429/5xx and network
//! errors are retried, other 4xx are permanent. Headers follow Standard
//! Webhooks: `webhook-id`, `webhook-timestamp`, and `webhook-signature` when
//! the alert has secrets ([`super::sign`]).

use std::time::Duration;

use super::{DeliverFuture, Delivery, Sink, SinkError};

/// Shared HTTP client for every webhook target.
#[derive(Clone)]
pub struct WebhookSink {
    client: reqwest::Client,
}

impl WebhookSink {
    /// A client with this request timeout.
    pub fn new(timeout: Duration) -> Result<WebhookSink, reqwest::Error> {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("sightline/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(WebhookSink { client })
    }

    /// The sink for one callback URL.
    pub fn for_url(&self, url: &str) -> WebhookTarget {
        WebhookTarget {
            client: self.client.clone(),
            url: url.to_string(),
        }
    }
}

/// One callback URL.
pub struct WebhookTarget {
    client: reqwest::Client,
    url: String,
}

impl Sink for WebhookTarget {
    fn name(&self) -> String {
        format!("webhook {}", super::payload::redact(&self.url))
    }

    fn deliver<'a>(&'a self, d: &'a Delivery) -> DeliverFuture<'a> {
        Box::pin(async move {
            // Stable per (alert, occurrence, phase): the receiver's idempotency key.
            let id = format!(
                "{}:{}:{}",
                d.payload.alert_id,
                d.payload.occurrence_id,
                phase_str(d)
            );
            // The timestamp is this attempt's, so receivers can refuse replays.
            let now = chrono::Utc::now().timestamp();
            let mut req = self
                .client
                .post(&self.url)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .header("webhook-timestamp", now.to_string());
            if !d.secrets.is_empty() {
                req = req.header(
                    "webhook-signature",
                    super::sign::header(&d.secrets, &id, now, &d.body),
                );
            }
            let resp = req
                .header("webhook-id", id)
                .body(d.body.to_vec())
                .send()
                .await
                .map_err(|e| SinkError::Retry(format!("POST failed: {e}")))?;
            let status = resp.status();
            if status.is_success() {
                Ok(())
            } else if status.is_server_error() || status.as_u16() == 408 || status.as_u16() == 429 {
                Err(SinkError::Retry(format!("receiver answered {status}")))
            } else {
                Err(SinkError::Permanent(format!("receiver answered {status}")))
            }
        })
    }
}

fn phase_str(d: &Delivery) -> &'static str {
    match d.payload.phase {
        crate::matcher::Phase::Start => "start",
        crate::matcher::Phase::End => "end",
    }
}
