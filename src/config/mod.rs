//! Configuration: TOML text → [`raw`] serde structs → a validated [`Config`].
//!
//! Every problem (unknown keys, wrong types, values out of range, dangling
//! references) is reported at once with its path, e.g.
//! `streams[1].fps: must be > 0 and <= 30, got 0`. A type error stops serde
//! itself, so that one is reported together with the unknown keys seen so far.

mod fleet;
mod raw;
mod sections;
mod tracking;
mod validate;

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use fleet::{FleetConfig, RawFleet, STREAMS_PER_CORE};
pub use raw::{RawAlert, RawConfig, RawEvent, RawLine, RawMotion, RawRegion, RawStream};
pub use validate::{
    check_alert, check_callback_url, check_event, check_stream, plain_text, valid_id,
};

pub use crate::domain::{
    AlertSpec, Direction, EventSpec, Line, MatchParams, ModelEntry, MotionSpec, MqttSettings,
    ObjectRules, Placement, Precision, Provider, RecordSettings, Region, SourceUrl, StreamSpec,
    Transport,
};

/// One thing wrong with a config, with where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Dotted path such as `events[0].min_confidence`.
    pub path: String,
    pub message: String,
}

/// All problems found in one config.
#[derive(Debug, Clone, thiserror::Error)]
pub struct ConfigError {
    /// Where the config came from (a file path or "embedded").
    pub origin: String,
    pub problems: Vec<Problem>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{}: {} problem(s) in the configuration:",
            self.origin,
            self.problems.len()
        )?;
        for p in &self.problems {
            writeln!(f, "  {}: {}", p.path, p.message)?;
        }
        Ok(())
    }
}

/// A validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub runtime: Runtime,
    /// The models to load, first one primary (resolved against the model
    /// directories at load).
    pub models: Vec<ModelEntry>,
    pub streams: Vec<StreamSpec>,
    pub events: Vec<EventSpec>,
    pub alerts: Vec<AlertSpec>,
    pub mqtt: Option<MqttSettings>,
    pub webhook: WebhookConfig,
    /// The control API, when on.
    pub api: Option<ApiConfig>,
    pub state: StateConfig,
    pub recording: RecordSettings,
    /// The site this box belongs to (`[fleet]`), if any.
    pub fleet: Option<FleetConfig>,
    /// The stream, event and alert sections as written, stored as the
    /// definitions of config-declared entities.
    pub declared: Declared,
}

/// Config-declared entities as written (see [`Config::declared`]).
#[derive(Debug, Clone, Default)]
pub struct Declared {
    pub streams: Vec<RawStream>,
    pub events: Vec<RawEvent>,
    pub alerts: Vec<RawAlert>,
}

/// The HTTP control API.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    pub listen: std::net::SocketAddr,
    pub key_file: Option<PathBuf>,
    pub ws_buffer: usize,
    /// WebSocket messages kept for resuming clients: how many, how long.
    pub ws_resume_messages: u64,
    pub ws_resume: std::time::Duration,
    /// Whether API callers may add `file://` and `test:` streams.
    pub allow_local_sources: bool,
    /// `scheme://host[:port]` of media URLs in payloads.
    pub public_url: Option<String>,
    /// `GET /metrics` without the key.
    pub metrics_public: bool,
}

/// Persistent state.
#[derive(Debug, Clone)]
pub struct StateConfig {
    /// `None` keeps state in memory (no API, or tests).
    pub dir: Option<PathBuf>,
    pub scene_records: usize,
    /// Dead letters kept; the oldest are deleted past it.
    pub max_dead_letters: usize,
    /// Streams, indexes, events and alerts kept, each.
    pub max_objects: usize,
    /// Hours of frame embeddings kept per stream (dual encoders).
    pub embedding_hours: f64,
    pub on_corruption: crate::domain::OnCorruption,
    /// Free space below which the log warns (bytes; 0 never).
    pub min_free_bytes: u64,
}

/// Worker pool and ONNX Runtime settings.
#[derive(Debug, Clone)]
pub struct Runtime {
    pub workers: usize,
    pub intra_threads: usize,
    pub queue_capacity: usize,
    pub max_frame_age: Duration,
    /// Period of the counters log line; `None` when turned off.
    pub stats_interval: Option<Duration>,
    pub ort_library: Option<PathBuf>,
    /// Niceness of the GStreamer streaming threads (`runtime.streaming_nice`).
    pub streaming_nice: i32,
}

/// Webhook delivery settings.
#[derive(Debug, Clone)]
pub struct WebhookConfig {
    pub timeout: Duration,
    /// Wait before each attempt (the first is usually zero).
    pub schedule: Vec<Duration>,
    pub concurrency: usize,
    /// Internal ranges callback URLs may reach.
    pub allow_private: Vec<crate::domain::Cidr>,
}

/// Default MQTT topic template.
pub const DEFAULT_TOPIC: &str = "sightline/{stream}/alerts/{label}";

impl Config {
    /// Parses and validates TOML text. `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Config, ConfigError> {
        let mut unknown = Vec::new();
        let de = toml::Deserializer::parse(text);
        let parsed: Result<RawConfig, String> = match de {
            Ok(de) => serde_ignored::deserialize(de, |path| {
                unknown.push(Problem {
                    path: path.to_string(),
                    message: "unknown field".into(),
                })
            })
            .map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        match parsed {
            Ok(raw) => {
                let mut problems = unknown;
                let cfg = validate::validate(raw, &mut problems);
                if problems.is_empty() {
                    Ok(cfg)
                } else {
                    Err(ConfigError {
                        origin: origin.to_string(),
                        problems,
                    })
                }
            }
            Err(message) => {
                let mut problems = unknown;
                problems.push(Problem {
                    path: "(syntax or type)".into(),
                    message: message.trim().replace('\n', " "),
                });
                Err(ConfigError {
                    origin: origin.to_string(),
                    problems,
                })
            }
        }
    }

    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let origin = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            origin: origin.clone(),
            problems: vec![Problem {
                path: "(file)".into(),
                message: format!("cannot read: {e}"),
            }],
        })?;
        Config::parse(&text, &origin)
    }
}

#[cfg(test)]
mod tests;
