//! Configuration: TOML text → [`raw`] serde structs → a validated [`Config`].
//!
//! Every problem (unknown keys, wrong types, values out of range, dangling
//! references) is reported at once with its path, e.g.
//! `streams[1].fps: must be > 0 and <= 30, got 0`. A type error stops serde
//! itself, so that one is reported together with the unknown keys seen so far.

mod raw;
mod validate;

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use raw::{RawAlert, RawConfig, RawEvent, RawStream};
pub use validate::{check_alert, check_callback_url, check_event, check_stream, valid_id};

use crate::types::{AlertId, EventId, StreamId};

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
    /// `[model] path` as written (resolved against the model directories at load).
    pub model: String,
    pub streams: Vec<StreamConfig>,
    pub events: Vec<EventConfig>,
    pub alerts: Vec<AlertConfig>,
    pub mqtt: Option<MqttConfig>,
    pub webhook: WebhookConfig,
    /// The control API, when on.
    pub api: Option<ApiConfig>,
    pub state: StateConfig,
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
    /// Whether API callers may add `file://` and `test:` streams.
    pub allow_local_sources: bool,
}

/// Persistent state.
#[derive(Debug, Clone)]
pub struct StateConfig {
    /// `None` keeps state in memory (no API, or tests).
    pub dir: Option<PathBuf>,
    pub scene_records: usize,
    /// Hours of frame embeddings kept per stream (dual encoders).
    pub embedding_hours: f64,
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
}

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
#[derive(Debug, Clone)]
pub struct StreamConfig {
    pub id: StreamId,
    pub url: SourceUrl,
    pub fps: f64,
    pub keyframes_only: bool,
    pub transport: Transport,
    pub stall_timeout: Duration,
    pub max_backoff: Duration,
}

/// A polygon in normalised picture coordinates.
#[derive(Debug, Clone, PartialEq)]
pub struct Region {
    pub name: String,
    pub points: Vec<(f32, f32)>,
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

/// One event (detection rule) as configured.
#[derive(Debug, Clone)]
pub struct EventConfig {
    pub id: EventId,
    pub prompt: String,
    pub label: String,
    pub classes: Option<Vec<String>>,
    pub min_confidence: f32,
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
}

/// One alert: an event wired to streams and delivery targets.
#[derive(Debug, Clone)]
pub struct AlertConfig {
    pub id: AlertId,
    pub event: EventId,
    /// Empty means every stream.
    pub streams: Vec<StreamId>,
    pub callback_url: Option<String>,
    /// Standard Webhooks signing secrets; requests are unsigned when empty.
    pub webhook_secrets: Vec<crate::alert::sign::Secret>,
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
pub struct MqttConfig {
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
}

/// Webhook delivery settings.
#[derive(Debug, Clone)]
pub struct WebhookConfig {
    pub timeout: Duration,
    /// Wait before each attempt (the first is usually zero).
    pub schedule: Vec<Duration>,
    pub concurrency: usize,
    /// Internal ranges callback URLs may reach.
    pub allow_private: Vec<crate::alert::guard::Cidr>,
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
