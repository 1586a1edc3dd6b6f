//! The config file exactly as written: serde structs with defaults, no
//! validation. Unknown keys are not rejected here; `load` collects them all
//! with `serde_ignored` so that one run reports every mistake at once (serde's
//! `deny_unknown_fields` stops at the first).

use serde::{Deserialize, Serialize};

/// Top level of a sightline TOML file.
#[derive(Debug, Default, Deserialize)]
pub struct RawConfig {
    #[serde(default)]
    pub runtime: RawRuntime,
    #[serde(default)]
    pub model: RawModel,
    /// Several models side by side (instead of `[model]`).
    #[serde(default)]
    pub models: Vec<RawModelEntry>,
    #[serde(default)]
    pub streams: Vec<RawStream>,
    #[serde(default)]
    pub events: Vec<RawEvent>,
    #[serde(default)]
    pub alerts: Vec<RawAlert>,
    pub mqtt: Option<RawMqtt>,
    #[serde(default)]
    pub webhook: RawWebhook,
    /// The control API; off when the section is absent.
    pub api: Option<RawApi>,
    #[serde(default)]
    pub state: RawState,
    #[serde(default)]
    pub recording: RawRecording,
    /// A site of boxes on NATS; absent: this box runs alone.
    pub fleet: Option<super::fleet::RawFleet>,
}

/// `[recording]`: rolling recording of the cameras' encoded video, clips
/// and snapshots per occurrence.
#[derive(Debug, Default, Deserialize)]
pub struct RawRecording {
    /// Record at all (default true when there is a state directory).
    pub enabled: Option<bool>,
    /// Where segments, clips and snapshots go (default `<state dir>/recordings`).
    pub dir: Option<String>,
    /// Target segment length in seconds; cuts fall on keyframes (default 2).
    pub segment_secs: Option<f64>,
    /// Disk budget over all streams, in GB (default 10).
    pub max_gb: Option<f64>,
    /// Oldest recording kept, in hours (default 24).
    pub max_hours: Option<f64>,
    /// Days the segments of an occurrence's clip are kept (default 7).
    pub clip_days: Option<f64>,
    /// Seconds of video before an occurrence's start in its clip (default 5).
    pub pre_secs: Option<f64>,
    /// Seconds after its end (default 5).
    pub post_secs: Option<f64>,
    /// Recording pauses below this much free space, in MB (default 64).
    pub min_free_mb: Option<f64>,
    /// How long signed media URLs in payloads stay valid, in hours (default 168).
    pub url_hours: Option<f64>,
}

/// `[api]`: the HTTP control API and WebSocket channels.
#[derive(Debug, Default, Deserialize)]
pub struct RawApi {
    /// Turn the API off while keeping the section (default true).
    pub enabled: Option<bool>,
    /// Address to bind (default `127.0.0.1:8420`).
    pub listen: Option<String>,
    /// File holding the API key; else `$CREDENTIALS_DIRECTORY/api-key`; else
    /// `<state dir>/api-key`, generated on first start.
    pub key_file: Option<String>,
    /// Messages buffered per WebSocket client before it is cut off (default 256).
    pub ws_buffer: Option<i64>,
    /// WebSocket messages kept for clients that reconnect with `?since=`
    /// (default 10000).
    pub ws_resume_messages: Option<i64>,
    /// And for how long at most, in hours (default 24).
    pub ws_resume_hours: Option<f64>,
    /// Let API callers add `file://` and `test:` streams (default false: the
    /// API adds cameras, `rtsp://` and `rtsps://`; the config file may use
    /// any scheme).
    pub allow_local_sources: Option<bool>,
    /// Scheme, host and port that media URLs in payloads carry, such as
    /// `http://camera-box.lan:8420` (default: the listen address).
    pub public_url: Option<String>,
    /// Serve `GET /metrics` without the API key (default false), for a
    /// Prometheus that scrapes over a trusted network.
    pub metrics_public: Option<bool>,
}

/// `[state]`: where streams, events, alerts and scene records persist.
#[derive(Debug, Default, Deserialize)]
pub struct RawState {
    /// State directory (default `$STATE_DIRECTORY`, else `/var/lib/sightline`
    /// when the API is on; in memory otherwise).
    pub dir: Option<String>,
    /// Scene records kept per index; older ones are deleted (default 10000).
    pub scene_records: Option<i64>,
    /// Dead letters kept, all targets together; the oldest are deleted past
    /// it (default 10000).
    pub max_dead_letters: Option<i64>,
    /// Streams, indexes, events and alerts kept, each; creating one more
    /// through the API is refused (default 10000).
    pub max_objects: Option<i64>,
    /// Dual encoders: hours of frame embeddings kept per stream for search
    /// and backtesting (default 24; 0 keeps none).
    pub embedding_hours: Option<f64>,
    /// A damaged database: "refuse" to start (default) or "rebuild".
    pub on_corruption: Option<String>,
    /// Warn in the log below this much free space on the state disk, in MB
    /// (default 64; 0 never warns).
    pub min_free_mb: Option<f64>,
}

/// `[runtime]`: the worker pool and ONNX Runtime.
#[derive(Debug, Default, Deserialize)]
pub struct RawRuntime {
    /// Inference worker threads, each with its own ONNX session (default 1).
    pub workers: Option<i64>,
    /// ONNX Runtime intra-op threads per worker (default: cores / workers).
    pub intra_threads: Option<i64>,
    /// Frames waiting for a worker, over all streams (default: 2 per stream, at least 4 per worker and 8).
    pub queue_capacity: Option<i64>,
    /// A queued frame older than this is dropped instead of scored (default 800 ms).
    pub max_frame_age_ms: Option<i64>,
    /// How often the counters are logged, in seconds; 0 turns it off (default 60).
    pub stats_interval_secs: Option<i64>,
    /// Path of `libonnxruntime.so`; else `ORT_DYLIB_PATH`; else where setup puts it.
    pub ort_library: Option<String>,
    /// Niceness of the GStreamer streaming threads (receive, decode,
    /// record), 0–19, so the inference workers come first (default 5).
    pub streaming_nice: Option<i64>,
}

/// `[model]`: which model folder to load.
#[derive(Debug, Default, Deserialize)]
pub struct RawModel {
    /// A folder holding `model.toml`, or the name of a folder under the model directories.
    pub path: Option<String>,
    /// As `[[models]] precision`.
    pub precision: Option<String>,
}

/// `[[models]]`: one of several models; events name it or are routed to it.
#[derive(Debug, Default, Clone, Deserialize)]
pub struct RawModelEntry {
    /// What events and payloads call it, such as "coco".
    pub name: Option<String>,
    /// As `[model] path`.
    pub path: Option<String>,
    /// ONNX Runtime execution provider: "cpu" (default), "cuda",
    /// "tensorrt" or "openvino".
    pub provider: Option<String>,
    /// "cpu" runs on the CPU, with a warning, when the provider cannot
    /// load; by default that is an error.
    pub fallback: Option<String>,
    /// "int8" runs the folder's calibrated int8 file, "fp32" the original;
    /// by default, whichever its `model.toml` recommends.
    pub precision: Option<String>,
}

/// `[[streams]]`: one camera.
#[derive(Debug, Default, Clone, Deserialize, Serialize)]
pub struct RawStream {
    pub id: Option<String>,
    /// `rtsp://…`, `file:///…` or `test:` (a synthetic pattern).
    pub url: Option<String>,
    /// Frames per second sent to the model (default 2).
    pub fps: Option<f64>,
    /// Drop non-key frames before the decoder (for fps at or below the keyframe rate).
    pub keyframes_only: Option<bool>,
    /// `tcp` (default) or `udp`, for RTSP.
    pub transport: Option<String>,
    /// Rebuild the pipeline when no frame arrives for this long (default 10 s).
    pub stall_timeout_secs: Option<f64>,
    /// Longest wait between reconnect attempts (default 30 s).
    pub max_backoff_secs: Option<f64>,
    /// The URL recorded instead of `url` (a camera's main stream, while
    /// detection reads its substream).
    pub record_url: Option<String>,
    /// Record this stream: default when an alert is wired to it.
    pub record: Option<bool>,
    /// Motion gating: frames that show nothing new are not scored.
    pub motion: Option<RawMotion>,
    /// In a site (`[fleet]`): the box, or a box label, this stream must run on.
    pub pin: Option<String>,
}

/// `[streams.motion]`: skip frames where nothing moved.
#[derive(Debug, Default, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawMotion {
    /// On by default; false scores every sampled frame.
    pub enabled: Option<bool>,
    /// 0 (only large, strong change counts) to 1 (the least change
    /// counts); default 0.5.
    pub sensitivity: Option<f64>,
    /// A still scene is still scored this often, in seconds (default 3).
    pub max_unscored_secs: Option<f64>,
    /// Polygons (normalised points) whose motion is ignored: a clock, trees.
    pub masks: Option<Vec<Vec<[f64; 2]>>>,
    /// With `keyframes_only`, judge keyframes from the compressed video's
    /// sizes before decoding them (default true).
    pub compressed: Option<bool>,
    /// 0 to 1 (default 0.5): how small a rise of the bitstream counts.
    pub compressed_sensitivity: Option<f64>,
}

/// `[[events]]`: a reusable detection rule.
#[derive(Debug, Default, Clone, Deserialize, Serialize)]
pub struct RawEvent {
    pub id: Option<String>,
    /// Free text such as "Detect intruder"; resolved to the model's labels.
    pub prompt: Option<String>,
    /// The label carried by alerts, such as "security_alert".
    pub label: Option<String>,
    /// Model labels to match; when absent they are resolved from the prompt.
    pub classes: Option<Vec<String>>,
    /// The `[[models]]` name that scores this event; when absent, the
    /// cheapest loaded model that can.
    pub model: Option<String>,
    /// Lowest detection score that counts (default 0.5).
    pub min_confidence: Option<f64>,
    /// Fewest matching objects in one frame (default 1).
    pub min_count: Option<i64>,
    /// Smallest box area as a fraction of the picture (default 0).
    pub min_area: Option<f64>,
    pub region: Option<RawRegion>,
    /// Dual encoders: prompts the event must beat, such as "a person wearing
    /// a helmet" against "a person without a helmet"; added to the default
    /// background prompts.
    pub negatives: Option<Vec<String>>,
    /// Dual encoders: how far the prompt's similarity must rise above this
    /// stream's usual level, in logits (similarity times the model's logit
    /// scale); default 2, 0 turns the baseline off.
    pub min_lift: Option<f64>,
    /// Dual encoders: how quickly the stream's usual level follows the
    /// scene, as a time constant in seconds (default 600).
    pub baseline_secs: Option<f64>,
    /// Matching frames needed among the last `window` to start (default 2).
    pub k: Option<i64>,
    /// Size of the start window in sampled frames (default 3).
    pub window: Option<i64>,
    /// Non-matching frames in a row that end an occurrence (default 4).
    pub end_after: Option<i64>,
    /// Longest occurrence in seconds before it is closed (default 300).
    pub max_duration_secs: Option<f64>,
    /// Quiet time after an occurrence ends (default 10 s).
    pub cooldown_secs: Option<f64>,
    /// Detectors: `"event"` (default), one occurrence while any object
    /// matches; `"object"`, one occurrence per tracked object.
    pub per: Option<String>,
    /// Detectors: an object must stay in the region this long before it
    /// counts (loitering); default 0.
    pub min_dwell_secs: Option<f64>,
    /// Detectors: one occurrence per crossing of this line.
    pub line: Option<RawLine>,
    /// Detectors: an object that has not moved for this long stops holding
    /// an occurrence open, and counts again only once it moves.
    pub stationary_secs: Option<f64>,
}

/// A line to count crossings of, in normalised picture coordinates.
#[derive(Debug, Default, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawLine {
    /// Two points, `[[x, y], [x, y]]`.
    pub points: Option<Vec<[f64; 2]>>,
    /// `"in"`, `"out"` or `"any"` (default): `in` is from the left-hand side
    /// of the line, walking from its first point to its second as drawn on
    /// the picture, to its right-hand side.
    pub direction: Option<String>,
}

/// A polygon in normalised picture coordinates.
#[derive(Debug, Default, Clone, Deserialize, Serialize)]
pub struct RawRegion {
    pub name: Option<String>,
    pub points: Option<Vec<[f64; 2]>>,
}

/// `[[alerts]]`: an event wired to streams and targets.
#[derive(Debug, Default, Clone, Deserialize, Serialize)]
pub struct RawAlert {
    pub id: Option<String>,
    pub event: Option<String>,
    /// Streams to watch; all streams when absent.
    pub streams: Option<Vec<String>>,
    /// Webhook URL that receives a POST per message.
    pub callback_url: Option<String>,
    /// Signing secrets (`whsec_…`); several during a rotation.
    pub webhook_secrets: Option<Vec<String>>,
    /// Publish over MQTT (needs `[mqtt]`); default true when `[mqtt]` exists.
    pub mqtt: Option<bool>,
    /// Topic template; `{stream}` and `{label}` are filled in.
    pub mqtt_topic: Option<String>,
    /// Also send a `phase: "end"` message when an occurrence ends (default true).
    pub send_end: Option<bool>,
    /// Start disabled.
    pub enabled: Option<bool>,
}

/// `[mqtt]`: the broker connection.
#[derive(Debug, Default, Deserialize)]
pub struct RawMqtt {
    pub host: Option<String>,
    pub port: Option<i64>,
    pub client_id: Option<String>,
    pub keep_alive_secs: Option<i64>,
    /// Default topic template (default `sightline/{stream}/alerts/{label}`).
    pub topic: Option<String>,
    /// Retained availability topic: `online` while connected, `offline` as
    /// the Last Will and on clean shutdown (default `sightline/status`).
    pub status_topic: Option<String>,
    /// Broker login; the password is read from `password_file`.
    pub username: Option<String>,
    pub password_file: Option<String>,
    /// Connect over TLS (default port 8883 then), verifying the broker
    /// against `ca_file`, else the system's roots.
    pub tls: Option<bool>,
    pub ca_file: Option<String>,
    /// Announce streams and rules to Home Assistant (MQTT discovery).
    pub discovery: Option<bool>,
    /// Discovery topic prefix (default `homeassistant`).
    pub discovery_prefix: Option<String>,
    /// Control and state topics, `sightline/<stream>/<event>/set|state|active`
    /// (default: on with discovery, else off).
    pub control: Option<bool>,
}

/// `[webhook]`: HTTP delivery settings shared by all callback URLs.
#[derive(Debug, Default, Deserialize)]
pub struct RawWebhook {
    pub timeout_ms: Option<i64>,
    /// Wait before each attempt, in seconds; its length is the number of
    /// attempts (default 0, 5, 300, 1800, 7200, 18000, 36000, 36000).
    pub retry_schedule_secs: Option<Vec<f64>>,
    /// Internal address ranges callback URLs may reach (default none:
    /// loopback, link-local and private addresses are refused).
    pub allow_private: Option<Vec<String>>,
    /// Requests in flight per URL (default 4).
    pub concurrency: Option<i64>,
}
