//! The delivery stage: one thread that takes occurrences from the matcher
//! stage and commits their messages to the outbox (SQLite, fsync), from
//! where each target's worker delivers them. Committing here, not on the
//! matcher's thread, is what keeps a burst of alerts from stalling matching
//! for every stream.

use std::sync::Arc;
use std::thread::JoinHandle;

use crossbeam_channel::Receiver;

use super::Dispatcher;
use crate::matcher::Occurrence;

/// Starts the stage; its thread ends when the matcher stage's sender is
/// dropped, returning how many deliveries it queued.
pub fn spawn(
    dispatcher: Arc<Dispatcher>,
    occurrences: Receiver<Occurrence>,
) -> std::io::Result<JoinHandle<u64>> {
    std::thread::Builder::new()
        .name("delivery".into())
        .spawn(move || {
            occurrences
                .iter()
                .map(|occ| dispatcher.dispatch(&occ) as u64)
                .sum()
        })
}
