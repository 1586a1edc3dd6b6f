//! The hand-off seam between a box's outbox and a site's alert stream.
//!
//! Standalone, a target's outbox worker delivers each committed message to
//! its receiver. In a site (`[fleet]`), the worker first offers the message
//! to a [`Handoff`]: when the site stored it (a replicated stream that every
//! box delivers from), the message leaves this box's outbox as if its
//! receiver had taken it, and whichever box is alive delivers it. When the
//! site cannot take it (NATS unreachable, quorum lost), the worker delivers
//! it itself, as a standalone box would; rows still waiting for a retry are
//! offered to the site again when their turn comes. So a message is always
//! in exactly one durable place: this box's SQLite outbox, or the site.

use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};

use futures_util::future::BoxFuture;

use super::{Delivery, Sink};

/// Where a box hands committed messages to be delivered by the site.
pub trait Handoff: Send + Sync {
    /// Offers one message for `target`; true once the site has stored it,
    /// false when it cannot take it now (the caller then delivers it).
    fn hand<'a>(&'a self, target: &'a str, d: &'a Delivery) -> BoxFuture<'a, bool>;
}

/// The hand-off, once the box has joined a site (set at most once).
pub type Slot = Arc<OnceLock<Arc<dyn Handoff>>>;

impl super::Dispatcher {
    /// Joins a site: from now on each target's worker offers its messages
    /// to `site` before delivering them itself. Only the first call counts.
    pub fn set_site(&self, site: Arc<dyn Handoff>) {
        let _ = self.site.set(site);
        // Rows already waiting go to the site at their next attempt.
        for (_, w) in self.webhooks.lock().iter().flat_map(|w| w.iter()) {
            w.wake.notify_one();
        }
        if let Some(w) = &self.mqtt {
            w.wake.notify_one();
        }
    }

    /// Delivers a message taken from the site's stream to its receiver,
    /// counted under `target`'s figures. `None`: this box cannot reach that
    /// kind of target (no `[mqtt]` here), so another box should.
    pub async fn deliver_for_site(
        &self,
        target: &str,
        d: &Delivery,
    ) -> Option<Result<(), super::SinkError>> {
        let sink: Arc<dyn Sink> = if target == super::MQTT_TARGET {
            Arc::clone(self.mqtt_sink.as_ref()?)
        } else {
            self.ensure_webhooks(std::iter::once(&target.to_string()));
            Arc::new(self.webhook.as_ref()?.for_url(target))
        };
        let stats = self.with_worker(target, |w| Arc::clone(&w.stats));
        if let Some(reason) = stats.as_ref().and_then(|s| s.disabled_reason()) {
            return Some(Err(super::SinkError::Gone(reason)));
        }
        let started = std::time::Instant::now();
        let result = sink.deliver(d).await;
        if let Some(s) = &stats {
            s.attempts.fetch_add(1, Ordering::Relaxed);
            s.attempt_times.observe(started.elapsed());
            let counter = match &result {
                Ok(()) => &s.site_delivered,
                Err(_) => &s.retries,
            };
            counter.fetch_add(1, Ordering::Relaxed);
        }
        Some(result)
    }

    /// The wait before the attempt after `failures` failed ones for
    /// `target`, `None` once its schedule is used up.
    pub fn retry_gap(&self, target: &str, failures: u32) -> Option<std::time::Duration> {
        let schedule = match target {
            super::MQTT_TARGET => &self.outbox.mqtt_schedule,
            _ => &self.outbox.schedule,
        };
        schedule.get(failures as usize).copied()
    }

    /// Keeps a site message that will not be delivered as a dead letter in
    /// this box's outbox (listed and redeliverable through its API); a
    /// redelivery hands it back to the site.
    pub fn bury(&self, target: &str, d: &Delivery, attempts: u32, error: &str) {
        let store = &self.outbox.store;
        let buried = store
            .add(&[d.row(target)], self.now_ms())
            .and_then(|seqs| {
                seqs.iter()
                    .try_for_each(|s| store.failed(*s, attempts, None, error))
            })
            .and_then(|()| store.trim_dead(self.outbox.max_dead).map(|_| ()));
        if let Some(s) = self.with_worker(target, |w| Arc::clone(&w.stats)) {
            s.failed.fetch_add(1, Ordering::Relaxed);
        }
        match buried {
            Ok(()) => tracing::error!(target, message = %d.message_id, attempts, %error,
                "site delivery failed for good; kept here as a dead letter"),
            Err(e) => tracing::error!(target, message = %d.message_id, error = %format!("{e:#}"),
                "cannot keep a failed site delivery as a dead letter"),
        }
    }
}
