//! What the daemon is asked to do, as validated values: streams, events
//! (detection rules), alerts (an event wired to targets) and the broker
//! connection. `config/` parses TOML and API bodies into these; every stage
//! takes them as they are, so no stage depends on the file format.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use super::Secret;
use super::{AlertId, EventId, StreamId};

/// Where a stream's pictures come from.
#[derive(Debug, Clone, PartialEq)]
pub enum SourceUrl {
    Rtsp(String),
    File(PathBuf),
    /// GStreamer's `videotestsrc` with the named pattern.
    Test(String),
}

impl fmt::Display for SourceUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SourceUrl::Rtsp(u) => f.write_str(u),
            SourceUrl::File(p) => write!(f, "file://{}", p.display()),
            SourceUrl::Test(p) => write!(f, "test:{p}"),
        }
    }
}

/// RTSP lower transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Tcp,
    Udp,
}

/// One camera stream.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamSpec {
    pub id: StreamId,
    pub url: SourceUrl,
    pub fps: f64,
    pub keyframes_only: bool,
    pub transport: Transport,
    pub stall_timeout: Duration,
    pub max_backoff: Duration,
    /// Recorded instead of `url` when set.
    pub record_url: Option<SourceUrl>,
    /// `Some(false)`: never recorded; `Some(true)`: always; `None`: when an
    /// alert is wired to it.
    pub record: Option<bool>,
    /// Motion gating.
    pub motion: MotionSpec,
}

/// A stream's motion settings (`[[streams]] motion`).
#[derive(Debug, Clone, PartialEq)]
pub struct MotionSpec {
    pub enabled: bool,
    /// 0 (only large, strong change counts) to 1 (the least change counts).
    pub sensitivity: f32,
    /// A still scene is scored at least this often, in stream seconds.
    pub max_unscored_secs: f64,
    /// Polygons whose motion is ignored, in normalised picture coordinates.
    pub masks: Vec<Vec<(f32, f32)>>,
    /// In keyframe mode, leave keyframes undecoded when the compressed
    /// video since the last decoded one was as quiet as a still scene.
    pub compressed: bool,
    /// 0 (only a clearly busier bitstream counts) to 1 (the least rise
    /// counts).
    pub compressed_sensitivity: f32,
}

impl Default for MotionSpec {
    fn default() -> Self {
        MotionSpec {
            enabled: true,
            sensitivity: 0.5,
            max_unscored_secs: 3.0,
            masks: Vec::new(),
            compressed: true,
            compressed_sensitivity: 0.5,
        }
    }
}

/// A polygon in normalised picture coordinates.
#[derive(Debug, Clone, PartialEq)]
pub struct Region {
    pub name: String,
    pub points: Vec<(f32, f32)>,
}

/// Which way over a line counts (the matcher judges crossings).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// From the left-hand side of the line (walking from its first point to
    /// its second, as drawn on the picture) to its right-hand side.
    In,
    Out,
    Any,
}

/// A line segment in normalised picture coordinates, and the direction of
/// crossing that counts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Line {
    pub a: (f32, f32),
    pub b: (f32, f32),
    pub direction: Direction,
}

/// The parts of a detector event that look at tracked objects rather than
/// single frames.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct ObjectRules {
    /// One occurrence per tracked object, instead of one for the event.
    pub per_object: bool,
    /// An object must stay in the region this long before it counts.
    pub min_dwell: f64,
    /// Occurrences are crossings of this line.
    pub line: Option<Line>,
    /// An object that has not moved for this long stops counting until it
    /// moves again.
    pub stationary: Option<f64>,
}

/// The k-of-n start, end and cooldown rules of an event.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MatchParams {
    pub k: usize,
    pub window: usize,
    pub end_after: usize,
    pub max_duration: f64,
    pub cooldown: f64,
}

impl Default for MatchParams {
    fn default() -> Self {
        MatchParams {
            k: 2,
            window: 3,
            end_after: 4,
            max_duration: 300.0,
            cooldown: 10.0,
        }
    }
}

/// What to do with a state database that fails its integrity check
/// (`[state] on_corruption`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnCorruption {
    /// Refuse to start, naming the file and the recovery command.
    #[default]
    Refuse,
    /// Move it aside and start from a fresh database, loudly.
    Rebuild,
}

/// One model to load: its name (what events and payloads call it) and its
/// folder or folder name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelEntry {
    pub name: String,
    pub path: String,
    /// Where ONNX Runtime runs it.
    pub placement: Placement,
    /// Which of the folder's files runs (`precision`); `None` is the one
    /// its `model.toml` recommends.
    pub precision: Option<Precision>,
}

/// Which weights of a model folder run: the original floats, or the
/// statically quantized int8 file calibrated beside them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Precision {
    #[default]
    Fp32,
    Int8,
}

impl Precision {
    /// Its config name.
    pub fn name(self) -> &'static str {
        match self {
            Precision::Fp32 => "fp32",
            Precision::Int8 => "int8",
        }
    }

    /// The precision a config value names.
    pub fn parse(s: &str) -> Option<Precision> {
        [Precision::Fp32, Precision::Int8]
            .into_iter()
            .find(|p| p.name() == s)
    }
}

/// Where ONNX Runtime runs a model's sessions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Placement {
    pub provider: Provider,
    /// Fall back to the CPU, loudly, when the provider cannot load.
    pub cpu_fallback: bool,
}

/// An ONNX Runtime execution provider (`[[models]] provider`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Provider {
    #[default]
    Cpu,
    Cuda,
    TensorRt,
    OpenVino,
}

impl Provider {
    /// Every provider, by its config name.
    pub const ALL: [(&'static str, Provider); 4] = [
        ("cpu", Provider::Cpu),
        ("cuda", Provider::Cuda),
        ("tensorrt", Provider::TensorRt),
        ("openvino", Provider::OpenVino),
    ];

    /// Its config name.
    pub fn name(self) -> &'static str {
        Provider::ALL
            .iter()
            .find(|(_, p)| *p == self)
            .map_or("cpu", |(n, _)| n)
    }
}

impl ModelEntry {
    /// What a box loads when the config names no model: the fast person
    /// detector, and the 80-class COCO detector beside it.
    pub fn defaults() -> Vec<ModelEntry> {
        [("person", "ssdlite-person"), ("coco", "centernet-coco")]
            .into_iter()
            .map(|(name, path)| ModelEntry {
                name: name.into(),
                path: path.into(),
                placement: Placement::default(),
                precision: None,
            })
            .collect()
    }
}

/// One event (detection rule) as configured.
#[derive(Debug, Clone)]
pub struct EventSpec {
    pub id: EventId,
    pub prompt: String,
    pub label: String,
    pub classes: Option<Vec<String>>,
    /// The model that must score it (by name); else the cheapest that can.
    pub model: Option<String>,
    /// As set; unset means the model's own `score_threshold` (detectors)
    /// or 0.5 (dual encoders).
    pub min_confidence: Option<f32>,
    pub min_count: usize,
    pub min_area: f32,
    pub region: Option<Region>,
    /// Dual encoders: prompts the event must beat (besides the background set).
    pub negatives: Vec<String>,
    /// Dual encoders: required rise above the stream baseline, in logits (0: off).
    pub min_lift: f32,
    /// Dual encoders: time constant of the stream baseline, seconds.
    pub baseline_secs: f64,
    pub matching: MatchParams,
    /// Rules over tracked objects; `None` judges each frame on its own.
    pub objects: Option<ObjectRules>,
}

/// One alert: an event wired to streams and delivery targets.
#[derive(Debug, Clone)]
pub struct AlertSpec {
    pub id: AlertId,
    pub event: EventId,
    /// Empty means every stream.
    pub streams: Vec<StreamId>,
    pub callback_url: Option<String>,
    /// Standard Webhooks signing secrets; requests are unsigned when empty.
    pub webhook_secrets: Vec<Secret>,
    /// Topic template when the alert publishes over MQTT.
    pub mqtt_topic: Option<String>,
    /// WebSocket connection that also receives the alert (at most once).
    pub ws_connection: Option<String>,
    /// Scene index the alert hangs under (API-created alerts).
    pub index: Option<String>,
    pub send_end: bool,
    pub enabled: bool,
}

/// The MQTT broker connection.
#[derive(Debug, Clone)]
pub struct MqttSettings {
    pub host: String,
    /// Username and password (read from its file at load).
    pub credentials: Option<(String, String)>,
    /// TLS: `Some(None)` verifies against the system roots, `Some(Some(pem))`
    /// against this CA.
    pub tls: Option<Option<Vec<u8>>>,
    pub port: u16,
    pub client_id: String,
    pub keep_alive: Duration,
    pub topic: String,
    pub status_topic: String,
    /// Home Assistant discovery prefix, when discovery is on.
    pub discovery: Option<String>,
    /// Whether `sightline/<stream>/<event>/set` is obeyed and the state
    /// topics are kept (always with discovery).
    pub control: bool,
}

impl StreamSpec {
    /// Whether `other` needs the same pipeline: it differs at most in the
    /// sampling (rate, keyframe mode), which a running stream takes live.
    pub fn same_pipeline(&self, other: &StreamSpec) -> bool {
        // Recording runs in a pipeline of its own: its settings never
        // touch the detection pipeline either.
        let sampling = |s: &StreamSpec| StreamSpec {
            fps: 0.0,
            keyframes_only: false,
            record_url: None,
            record: None,
            ..s.clone()
        };
        sampling(self) == sampling(other)
    }
}

/// Rolling recording, clips and snapshots.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordSettings {
    /// `None`: recording is off.
    pub dir: Option<PathBuf>,
    pub segment: Duration,
    pub max_bytes: u64,
    pub max_age: Duration,
    pub clip_keep: Duration,
    pub pre: Duration,
    pub post: Duration,
    pub min_free_bytes: u64,
    /// Lifetime of signed media URLs.
    pub url_ttl: Duration,
}
