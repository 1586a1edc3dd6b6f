//! Webhook delivery: one JSON POST per message, with a timeout; redirects are
//! not followed (a 3xx is a failure), 2xx is success, 408/429/5xx and network
//! errors are retried, other 4xx are permanent.

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
            let resp = self
                .client
                .post(&self.url)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .header(
                    "webhook-id",
                    format!("{}:{}", d.payload.occurrence_id, phase_str(d)),
                )
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
