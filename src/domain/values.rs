//! Plain values that flow between the stages: frames, detections, scores,
//! frame embeddings and the id newtypes. Nothing here knows about GStreamer,
//! ONNX Runtime or IO, so every stage can be tested with values built by hand.

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

/// One frame's unit-length image embedding, quantised to 8-bit integers
/// with one scale: what search and backtest scan, and what the store keeps.
#[derive(Debug, Clone)]
pub struct FrameEmbedding {
    /// Wall-clock time of the frame, Unix milliseconds.
    pub wall_ms: i64,
    /// Stream time of the frame, seconds (restarts at 0 with the daemon).
    pub t: f64,
    pub scale: f32,
    pub q: Arc<[i8]>,
}

impl FrameEmbedding {
    /// Quantises a unit-length embedding.
    pub fn new(wall_ms: i64, t: f64, v: &[f32]) -> FrameEmbedding {
        let top = v
            .iter()
            .fold(0.0f32, |m, x| m.max(x.abs()))
            .max(f32::MIN_POSITIVE);
        let scale = top / 127.0;
        let q = v.iter().map(|x| (x / scale).round() as i8).collect();
        FrameEmbedding {
            wall_ms,
            t,
            scale,
            q,
        }
    }

    /// Dot product with a full-precision vector.
    pub fn dot(&self, v: &[f32]) -> f32 {
        let s: f32 = self.q.iter().zip(v).map(|(&a, &b)| a as f32 * b).sum();
        s * self.scale
    }

    /// Dot product with another quantised vector, in integers (the compiler
    /// turns this into wide multiply-adds; ~10x the float version).
    pub fn dot_quantised(&self, other: &FrameEmbedding) -> f32 {
        let s: i32 = self
            .q
            .iter()
            .zip(other.q.iter())
            .map(|(&a, &b)| i32::from(a) * i32::from(b))
            .sum();
        s as f32 * self.scale * other.scale
    }
}
