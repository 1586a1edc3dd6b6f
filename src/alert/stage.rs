//! The delivery stage: one thread that takes occurrences from the matcher
//! stage, captures their evidence (snapshot, clip record) and commits their
//! messages to the outbox (SQLite, fsync), from where each target's worker
//! delivers them. Committing here, not on the matcher's thread, is what
//! keeps a burst of alerts from stalling matching for every stream. After
//! an occurrence ends it also sends `clip_ready` once the clip's last
//! segment is on disk. Messages the outbox cannot take (a full disk) are
//! held in memory by the dispatcher and retried here every second.

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError};

use super::payload::{Links, MessagePhase};
use super::Dispatcher;
use crate::clock::Clocks;
use crate::matcher::{Occurrence, Phase};

/// What the delivery stage asks of the recorder (`record::evidence`).
pub trait Evidence: Send + Sync {
    /// Stores what the occurrence's message shows (the snapshot, the
    /// clip's span) and returns the links to it; default links when the
    /// stream is not recorded.
    fn capture(&self, occ: &Occurrence) -> Links;
    /// For an ended occurrence: the wall time (Unix ms) by which its clip
    /// should be on disk, `None` if it has no clip.
    fn clip_due(&self, occ: &Occurrence) -> Option<i64>;
    /// Whether the ended occurrence's clip is on disk to its end.
    fn clip_on_disk(&self, occ: &Occurrence) -> bool;
}

/// Told of each occurrence message once it is committed (the MQTT state
/// topics, `app::homeassistant`). Must not block.
pub trait Observer: Send + Sync {
    fn seen(&self, occ: &Occurrence, links: &Links);
}

/// What the stage hands each occurrence to besides the dispatcher.
#[derive(Default, Clone)]
pub struct Extras {
    pub evidence: Option<Arc<dyn Evidence>>,
    pub observer: Option<Arc<dyn Observer>>,
}

/// An ended occurrence waiting for its clip.
struct Waiting {
    due: i64,
    give_up: i64,
    occ: Occurrence,
    links: Links,
}

/// Starts the stage; its thread ends when the matcher stage's sender is
/// dropped, returning how many deliveries it queued.
pub fn spawn(
    dispatcher: Arc<Dispatcher>,
    occurrences: Receiver<Occurrence>,
    extras: Extras,
    clocks: Arc<dyn Clocks>,
) -> std::io::Result<JoinHandle<u64>> {
    std::thread::Builder::new()
        .name("delivery".into())
        .spawn(move || run(&dispatcher, &occurrences, &extras, &*clocks))
}

fn run(d: &Dispatcher, rx: &Receiver<Occurrence>, extras: &Extras, clocks: &dyn Clocks) -> u64 {
    let evidence = extras.evidence.as_deref();
    let mut queued = 0u64;
    let mut waiting: Vec<Waiting> = Vec::new();
    loop {
        let now = clocks.wall_ms();
        let next = waiting.iter().map(|w| w.due).min();
        let mut wait = next.map_or(Duration::from_secs(3600), |due| {
            Duration::from_millis((due - now).clamp(0, 3_600_000) as u64)
        });
        // Messages held while the outbox could not commit: retry each second.
        if d.spilled() > 0 {
            d.flush_spill();
            wait = wait.min(Duration::from_secs(1));
        }
        match rx.recv_timeout(wait) {
            Ok(occ) => {
                let links = evidence.map(|e| e.capture(&occ)).unwrap_or_default();
                queued += d.dispatch_with(&occ, occ.phase.into(), &links) as u64;
                if let Some(o) = &extras.observer {
                    o.seen(&occ, &links);
                }
                let due = match (occ.phase, evidence) {
                    (Phase::End, Some(e)) => e.clip_due(&occ),
                    _ => None,
                };
                if let Some(due) = due {
                    let give_up = due + 120_000;
                    waiting.push(Waiting {
                        due,
                        give_up,
                        occ,
                        links,
                    });
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break,
        }
        let Some(e) = evidence else { continue };
        let now = clocks.wall_ms();
        waiting.retain_mut(|w| {
            if w.due > now {
                return true;
            }
            if e.clip_on_disk(&w.occ) {
                queued += d.dispatch_with(&w.occ, MessagePhase::ClipReady, &w.links) as u64;
                return false;
            }
            if now > w.give_up {
                tracing::warn!(occurrence = %w.occ.occurrence_id, stream = %w.occ.stream_id,
                    "the clip's last segment never reached the disk; no clip_ready sent");
                return false;
            }
            w.due = now + 500;
            true
        });
    }
    if !waiting.is_empty() {
        tracing::warn!(
            clips = waiting.len(),
            "shutting down before these clips were complete; no clip_ready sent for them"
        );
    }
    queued
}
