//! The recorder's side of the delivery stage: for each occurrence message,
//! the snapshot JPEGs and the clip's span are stored before the message is
//! committed, so the links it carries work when it arrives. Links are
//! signed (see [`super::sign`]) with the configured lifetime.

use std::sync::Arc;

use super::Recorder;
use crate::alert::payload::Links;
use crate::alert::stage::Evidence;
use crate::clock::{unix_ms, Clocks};
use crate::matcher::{Occurrence, Phase};
use crate::store::{ClipRow, Store};

/// Evidence for occurrences of recorded streams.
pub struct Capture {
    pub recorder: Arc<Recorder>,
    pub store: Arc<Store>,
    /// `scheme://host:port` that links carry.
    pub base: String,
    pub clocks: Arc<dyn Clocks>,
}

impl Capture {
    /// Wall time (Unix ms) of stream time `t`, from the message's frame.
    fn wall_ms(occ: &Occurrence, t: f64) -> i64 {
        unix_ms(occ.frame_wall) - ((occ.frame_time - t) * 1000.0).round() as i64
    }

    /// Signed links to an occurrence's evidence.
    pub fn links(&self, stream: &str, occ: &str) -> Links {
        let exp = self.clocks.wall_ms() / 1000 + self.recorder.settings.url_ttl.as_secs() as i64;
        let url = |what: &str| {
            let path = format!("/media/{stream}/{occ}/{what}");
            Some(format!(
                "{}{}",
                self.base,
                self.recorder.signer.signed(&path, exp)
            ))
        };
        Links {
            snapshot_url: url("snapshot.jpg"),
            stream_url: url("clip.m3u8"),
            clip_url: url("clip.mp4"),
            player_url: url("player"),
        }
    }

    fn snapshot(&self, occ: &Occurrence) {
        let Some(p) = &occ.picture else { return };
        let dir = self.recorder.evidence_dir();
        let written = super::clips::snapshots(p, &occ.boxes).and_then(|(boxed, clean)| {
            std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
            let id = &occ.occurrence_id;
            std::fs::write(dir.join(format!("{id}.jpg")), boxed).map_err(|e| e.to_string())?;
            std::fs::write(dir.join(format!("{id}-clean.jpg")), clean).map_err(|e| e.to_string())
        });
        if let Err(e) = written {
            tracing::warn!(occurrence = %occ.occurrence_id, error = %e, "cannot store the snapshot");
        }
    }
}

impl Evidence for Capture {
    fn capture(&self, occ: &Occurrence) -> Links {
        if !self.recorder.is_recording(occ.stream_id.as_str()) {
            return Links::default();
        }
        self.snapshot(occ);
        let row = ClipRow {
            occurrence_id: occ.occurrence_id.clone(),
            stream_id: occ.stream_id.to_string(),
            event_id: occ.event_id.to_string(),
            label: occ.label.clone(),
            confidence: f64::from(occ.confidence),
            explanation: occ.explanation.clone(),
            start_ms: Self::wall_ms(occ, occ.start_time),
            end_ms: (occ.phase == Phase::End).then(|| Self::wall_ms(occ, occ.end_time)),
            start_time: occ.start_time,
            end_time: occ.end_time,
            created_ms: self.clocks.wall_ms(),
        };
        if let Err(e) = self.store.put_clip(&row) {
            tracing::warn!(occurrence = %occ.occurrence_id, error = %format!("{e:#}"), "cannot store the clip");
        }
        self.links(occ.stream_id.as_str(), &occ.occurrence_id)
    }

    fn clip_due(&self, occ: &Occurrence) -> Option<i64> {
        if !self.recorder.is_recording(occ.stream_id.as_str()) {
            return None;
        }
        let s = &self.recorder.settings;
        Some(Self::wall_ms(occ, occ.end_time) + (s.post + s.segment).as_millis() as i64)
    }

    fn clip_on_disk(&self, occ: &Occurrence) -> bool {
        let post = self.recorder.settings.post.as_millis() as i64;
        let to = Self::wall_ms(occ, occ.end_time) + post;
        self.recorder.on_disk_through(occ.stream_id.as_str(), to)
    }
}
