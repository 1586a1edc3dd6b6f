//! Plain values that flow between the stages: frames, detections, scores and
//! the id newtypes. Nothing here knows about GStreamer, ONNX Runtime or IO, so
//! every stage can be tested with values built by hand.

use std::fmt;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub Arc<str>);

        impl $name {
            /// Wraps a string as this id.
            pub fn new(s: impl AsRef<str>) -> Self {
                Self(Arc::from(s.as_ref()))
            }
            /// The id as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

id_type!(
    /// Identifies one camera stream.
    StreamId
);
id_type!(
    /// Identifies one event (a reusable detection rule).
    EventId
);
id_type!(
    /// Identifies one alert (an event wired to a stream and targets).
    AlertId
);

/// One decoded, colour-converted and scaled frame, ready for a model.
#[derive(Clone)]
pub struct Frame {
    pub stream_id: StreamId,
    /// Per-stream sequence number, counting frames handed to the pool.
    pub seq: u64,
    /// Wall-clock time the frame arrived from the pipeline.
    pub wall: SystemTime,
    /// Monotonic arrival time, for latency measurement.
    pub arrived: Instant,
    /// Seconds since the stream started (monotonic across reconnects).
    pub stream_secs: f64,
    pub width: u32,
    pub height: u32,
    /// Tightly packed RGB, `width * height * 3` bytes.
    pub rgb: Vec<u8>,
    /// The part of the frame that holds picture (not letterbox borders), as
    /// normalised `[xmin, ymin, xmax, ymax]`. `[0, 0, 1, 1]` when stretched.
    pub content: [f32; 4],
    /// The camera picture's display aspect (width / height); 0 if unknown.
    pub aspect: f32,
    /// The models to run on it (places in the model set), all of this
    /// frame's size.
    pub models: Arc<[usize]>,
    /// The stream branch's motion gate, when gating is on.
    pub gate: Option<Arc<FrameGate>>,
    /// What the gate decided when the frame was submitted (set by the pool).
    pub decided: Option<crate::motion::Decision<Results>>,
}

/// What a model made of one frame.
#[derive(Debug, Default, Clone)]
pub struct Seen {
    pub detections: Vec<Detection>,
    /// Dual encoders: the unit-length image embedding.
    pub embedding: Option<Arc<[f32]>>,
}

/// What each of a frame's models made of it, by place in the model set:
/// what an unchanged frame repeats.
pub type Results = Arc<[(usize, Seen)]>;

/// A motion gate over frames and their results.
pub type FrameGate = crate::motion::Gate<Results>;

impl fmt::Debug for Frame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Frame")
            .field("stream_id", &self.stream_id)
            .field("seq", &self.seq)
            .field("stream_secs", &self.stream_secs)
            .field("size", &(self.width, self.height))
            .finish()
    }
}

/// One object a detector found, with its box in normalised picture
/// coordinates `[xmin, ymin, xmax, ymax]` (letterbox borders removed).
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Detection {
    pub label: Arc<str>,
    pub score: f32,
    pub bbox: [f32; 4],
}

/// Intersection over union of two `[x0, y0, x1, y1]` boxes (0 when both
/// are empty): the overlap measure of non-maximum suppression and tracking.
pub fn iou(a: &[f32; 4], b: &[f32; 4]) -> f32 {
    let w = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0);
    let h = (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
    let inter = w * h;
    let area = |r: &[f32; 4]| (r[2] - r[0]).max(0.0) * (r[3] - r[1]).max(0.0);
    let union = area(a) + area(b) - inter;
    if union <= 0.0 {
        0.0
    } else {
        inter / union
    }
}

impl Detection {
    /// Area of the box as a fraction of the picture.
    pub fn area(&self) -> f32 {
        ((self.bbox[2] - self.bbox[0]).max(0.0)) * ((self.bbox[3] - self.bbox[1]).max(0.0))
    }
    /// Centre of the box.
    pub fn centre(&self) -> (f32, f32) {
        (
            (self.bbox[0] + self.bbox[2]) / 2.0,
            (self.bbox[1] + self.bbox[3]) / 2.0,
        )
    }
}

/// The picture a frame showed, kept for evidence (snapshots): the model's
/// input frame, as scored.
#[derive(Debug)]
pub struct Picture {
    pub width: u32,
    pub height: u32,
    /// Tightly packed RGB.
    pub rgb: Vec<u8>,
    /// The part that holds picture (not letterbox borders), normalised.
    pub content: [f32; 4],
    /// The camera picture's display aspect (width / height); 0 if unknown.
    pub aspect: f32,
}

/// The newest picture each stream showed and when, for the console's
/// camera view (the matcher stage puts, the API reads).
#[derive(Default)]
pub struct LatestPictures(
    std::sync::Mutex<std::collections::HashMap<StreamId, (Arc<Picture>, SystemTime)>>,
);

impl LatestPictures {
    pub fn put(&self, stream: &StreamId, picture: Arc<Picture>, wall: SystemTime) {
        if let Ok(mut m) = self.0.lock() {
            m.insert(stream.clone(), (picture, wall));
        }
    }

    /// The stream's newest picture and how long ago it was taken.
    pub fn get(&self, stream: &str) -> Option<(Arc<Picture>, std::time::Duration)> {
        let (picture, wall) = self.0.lock().ok()?.get(&StreamId::new(stream)).cloned()?;
        let age = SystemTime::now().duration_since(wall).unwrap_or_default();
        Some((picture, age))
    }
}

/// What the pool hands to the matcher for one frame.
#[derive(Clone, Debug)]
pub struct Scores {
    pub stream_id: StreamId,
    pub seq: u64,
    pub wall: SystemTime,
    pub arrived: Instant,
    pub stream_secs: f64,
    pub detections: Vec<Detection>,
    /// Dual encoders: the frame's unit-length image embedding.
    pub embedding: Option<Arc<[f32]>>,
    /// Which loaded model gave these scores (its place in the model set).
    pub model: usize,
    /// Time the frame waited in the pool's queue.
    pub queued: std::time::Duration,
    /// Time spent in the model (zero when repeated).
    pub inference: std::time::Duration,
    /// The frame showed nothing new: these are the last scored frame's
    /// results, standing for it (motion gating).
    pub repeated: bool,
    /// The frame itself, for snapshots.
    pub picture: Option<Arc<Picture>>,
}

/// The latest (stream seconds, Unix ms) seen per stream: how a stream time
/// maps to wall time (the scene stage writes it, the media API reads it).
#[derive(Debug, Default)]
pub struct TimeBases(std::sync::Mutex<std::collections::HashMap<StreamId, (f64, i64)>>);

impl TimeBases {
    pub fn note(&self, stream: &StreamId, stream_secs: f64, wall_ms: i64) {
        if let Ok(mut m) = self.0.lock() {
            m.insert(stream.clone(), (stream_secs, wall_ms));
        }
    }

    /// Unix ms of stream time `t` on `stream`, if the stream has been seen.
    pub fn wall_ms(&self, stream: &str, t: f64) -> Option<i64> {
        let m = self.0.lock().ok()?;
        let (s, w) = m.get(&StreamId::new(stream))?;
        Some(w - ((s - t) * 1000.0).round() as i64)
    }
}
