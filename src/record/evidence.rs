//! The recorder's side of the delivery stage: for each occurrence message,
//! the boxed snapshot is stored before the message is committed (so its
//! link works when the message arrives); the clean copy and the clip's span
//! are written by the evidence thread meanwhile. Links are
//! signed (see [`super::sign`]) with the configured lifetime.

use std::sync::Arc;

use super::Recorder;
use crate::alert::payload::Links;
use crate::alert::stage::Evidence;
use crate::clock::unix_ms;
use crate::matcher::{Occurrence, Phase};
use crate::store::{ClipRow, Store};

/// Evidence for occurrences of recorded streams.
pub struct Capture {
    pub recorder: Arc<Recorder>,
    /// `scheme://host:port` that links carry.
    pub base: String,
    /// Where the latest snapshot of each (stream, label) is also published
    /// (Home Assistant's image entity, over MQTT).
    pub snapshots: Option<Arc<dyn SnapshotSink>>,
    /// Work done beside the delivery thread, in order, on a thread of its
    /// own (a clip row is an fsync, a clean JPEG an encode: neither may
    /// delay a message).
    pub after: crossbeam_channel::Sender<After>,
}

/// Who else gets each snapshot as it is written: the boxed JPEG of the
/// newest occurrence of `label` on `stream`.
pub trait SnapshotSink: Send + Sync {
    fn publish(&self, stream: &str, label: &str, jpeg: Vec<u8>) -> Result<(), String>;
}

/// Evidence written on the evidence thread.
pub enum After {
    Clip(Box<ClipRow>),
    Clean(String, image::RgbImage),
}

/// Starts the thread that does the [`After`] work; it ends when every
/// sender is gone.
pub fn spawn_after(
    store: Arc<Store>,
    dir: std::path::PathBuf,
) -> std::io::Result<crossbeam_channel::Sender<After>> {
    let (tx, rx) = crossbeam_channel::unbounded::<After>();
    std::thread::Builder::new()
        .name("evidence".into())
        .spawn(move || {
            for job in rx {
                let r = match job {
                    After::Clip(row) => store.put_clip(&row).map_err(|e| format!("{e:#}")),
                    After::Clean(id, img) => super::clips::clean_jpeg(&img).and_then(|j| {
                        std::fs::write(dir.join(format!("{id}-clean.jpg")), j)
                            .map_err(|e| e.to_string())
                    }),
                };
                if let Err(e) = r {
                    tracing::warn!(error = %e, "cannot store evidence");
                }
            }
        })?;
    Ok(tx)
}

/// Signed links to an occurrence's evidence, valid for the configured
/// lifetime from now, on `base` (`scheme://host:port`).
pub fn links(recorder: &Recorder, base: &str, stream: &str, occ: &str) -> Links {
    let exp = recorder.link_expiry();
    let url = |what: &str| {
        let path = format!("/media/{stream}/{occ}/{what}");
        Some(format!("{base}{}", recorder.signer.signed(&path, exp)))
    };
    Links {
        snapshot_url: url("snapshot.jpg"),
        stream_url: url("clip.m3u8"),
        clip_url: url("clip.mp4"),
        player_url: url("player"),
    }
}

impl Capture {
    /// Wall time (Unix ms) of stream time `t`, from the message's frame.
    fn wall_ms(occ: &Occurrence, t: f64) -> i64 {
        unix_ms(occ.frame_wall) - ((occ.frame_time - t) * 1000.0).round() as i64
    }

    /// Signed links to an occurrence's evidence.
    pub fn links(&self, stream: &str, occ: &str) -> Links {
        links(&self.recorder, &self.base, stream, occ)
    }

    /// Writes the snapshot with boxes (and hands it to `snapshots`);
    /// returns the picture for the clean copy.
    fn snapshot(&self, occ: &Occurrence) -> Option<image::RgbImage> {
        let p = occ.picture.as_ref()?;
        let dir = self.recorder.evidence_dir();
        let made = super::clips::shown(p).and_then(|img| {
            let boxed = super::clips::boxed_jpeg(&img, &occ.boxes)?;
            std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
            let id = &occ.occurrence_id;
            std::fs::write(dir.join(format!("{id}.jpg")), &boxed).map_err(|e| e.to_string())?;
            if let Some(s) = &self.snapshots {
                s.publish(occ.stream_id.as_str(), &occ.label, boxed)?;
            }
            Ok(img)
        });
        made.inspect_err(|e| {
            tracing::warn!(occurrence = %occ.occurrence_id, error = %e, "cannot store the snapshot")
        })
        .ok()
    }
}

impl Evidence for Capture {
    fn capture(&self, occ: &Occurrence) -> Links {
        if !self.recorder.is_recording(occ.stream_id.as_str()) {
            return Links::default();
        }
        // The clean JPEG and the clip row go to the evidence thread: the
        // message is committed meanwhile, not after them.
        if let Some(img) = self.snapshot(occ) {
            let _ = self
                .after
                .send(After::Clean(occ.occurrence_id.clone(), img));
        }
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
            // Retention compares it with steady time.
            created_ms: self.recorder.steady_ms(),
            expired: None,
        };
        let _ = self.after.send(After::Clip(Box::new(row)));
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
