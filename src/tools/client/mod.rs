//! The operator's client: `sightline streams|indexes|events|alerts …` talk
//! to a running daemon through its API and print the reply's `data`, as a
//! table (`table.rs`) or, with `--json`, as JSON. The address and key come
//! from the daemon's config file (the same `[api]` and `[state]` sections
//! it reads), or from `--api` and `--key-file`; the key is never an
//! argument. Failures map to the exit codes in [`exit`].

pub mod table;

use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context};
use clap::{Args, Subcommand};
use serde_json::{json, Value};

use crate::config::Config;

/// Where the daemon is and how to authenticate.
#[derive(Args, Debug, Clone)]
pub struct Target {
    /// The daemon's config file (finds the API address and key).
    #[arg(
        long,
        short,
        global = true,
        default_value = "/etc/sightline/sightline.toml"
    )]
    pub config: PathBuf,
    /// API base URL, instead of reading it from the config.
    #[arg(long, global = true)]
    pub api: Option<String>,
    /// File holding the API key (else the config's, else $SIGHTLINE_API_KEY_FILE).
    #[arg(long, global = true)]
    pub key_file: Option<PathBuf>,
    /// Print the reply's data as JSON (for scripts) instead of a table.
    #[arg(long, global = true)]
    pub json: bool,
}

/// The command's exit codes (also in `sightline --help` and docs/CLI.md).
pub mod exit {
    /// Done.
    pub const OK: u8 = 0;
    /// Failed while running (the daemon's own error, a check that failed).
    pub const FAILURE: u8 = 1;
    /// Bad input: arguments, a config file, or a request the daemon refused as invalid.
    pub const BAD_INPUT: u8 = 2;
    /// The daemon could not be reached.
    pub const UNREACHABLE: u8 = 3;
    /// The daemon refused the key.
    pub const UNAUTHORISED: u8 = 4;
    /// No such stream, index, event or alert.
    pub const NOT_FOUND: u8 = 5;
}

/// Why a client call failed.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error("cannot reach the daemon at {base}: {reason}")]
    Unreachable { base: String, reason: String },
    #[error("{code}: {message}")]
    Refused { code: u16, message: String },
    #[error("{0:#}")]
    Other(anyhow::Error),
}

impl CallError {
    /// The exit code this failure gives.
    pub fn exit_code(&self) -> u8 {
        match self {
            CallError::Unreachable { .. } => exit::UNREACHABLE,
            CallError::Refused {
                code: 401 | 403, ..
            } => exit::UNAUTHORISED,
            CallError::Refused { code: 404, .. } => exit::NOT_FOUND,
            CallError::Refused { code, .. } if (400..500).contains(code) => exit::BAD_INPUT,
            _ => exit::FAILURE,
        }
    }
}

#[derive(Subcommand, Debug)]
pub enum Streams {
    /// List streams with their status and health.
    List,
    /// Connect a new stream and start it.
    Add {
        #[arg(long)]
        name: String,
        #[arg(long)]
        url: String,
        #[arg(long)]
        fps: Option<f64>,
        #[arg(long)]
        keyframes_only: bool,
    },
    /// Start a stopped stream again.
    Start { id: String },
    /// Stop a stream (it stays configured; `start` resumes it).
    Stop { id: String },
    /// Stop a stream and forget it, with its indexes and alerts.
    Delete { id: String },
}

#[derive(Subcommand, Debug)]
pub enum Indexes {
    /// List the scene indexes of a stream.
    List { stream: String },
    /// Index a stream's visuals: a record per `time` seconds.
    Create {
        stream: String,
        #[arg(long, default_value_t = 1.0)]
        time: f64,
        #[arg(long)]
        name: Option<String>,
    },
    /// Recent records of an index.
    Records {
        stream: String,
        index: String,
        #[arg(long, default_value_t = 1)]
        page: usize,
    },
    /// Resume writing records to an index.
    Start { stream: String, index: String },
    /// Pause an index (its records stay).
    Stop { stream: String, index: String },
}

#[derive(Subcommand, Debug)]
pub enum Events {
    /// Every event, config-declared ones included, with its model.
    List,
    /// Create an event; refused when the model cannot score the prompt.
    Create {
        #[arg(long)]
        prompt: String,
        #[arg(long)]
        label: String,
    },
    /// Delete an event; refused while an alert still uses it.
    Delete { id: String },
}

#[derive(Subcommand, Debug)]
pub enum Alerts {
    /// Every alert, config-declared ones included.
    List,
    /// Wire an event to a stream's index and to targets.
    Create {
        #[arg(long)]
        stream: String,
        #[arg(long)]
        index: String,
        #[arg(long)]
        event: String,
        #[arg(long)]
        callback_url: Option<String>,
        /// Also publish over MQTT with this topic template.
        #[arg(long)]
        mqtt_topic: Option<String>,
    },
    /// Send this alert's messages again.
    Enable { id: String },
    /// Stop this alert's messages (kept across restarts).
    Disable { id: String },
    /// Delete an alert.
    Delete { id: String },
}

/// A request: method, path, body.
pub type Call = (&'static str, String, Option<Value>);

/// Requests of the `streams` commands.
pub fn streams(c: Streams) -> Call {
    match c {
        Streams::List => ("GET", "rtstream".into(), None),
        Streams::Add {
            name,
            url,
            fps,
            keyframes_only,
        } => (
            "POST",
            "rtstream".into(),
            Some(json!({"name": name, "url": url, "fps": fps, "keyframes_only": keyframes_only})),
        ),
        Streams::Start { id } => status(format!("rtstream/{id}/status"), "start"),
        Streams::Stop { id } => status(format!("rtstream/{id}/status"), "stop"),
        Streams::Delete { id } => ("DELETE", format!("rtstream/{id}"), None),
    }
}

/// Requests of the `indexes` commands.
pub fn indexes(c: Indexes) -> Call {
    match c {
        Indexes::List { stream } => ("GET", format!("rtstream/{stream}/index/scene"), None),
        Indexes::Create { stream, time, name } => (
            "POST",
            format!("rtstream/{stream}/index/scene"),
            Some(
                json!({"extraction_type": "time", "extraction_config": {"time": time}, "name": name}),
            ),
        ),
        Indexes::Records {
            stream,
            index,
            page,
        } => (
            "GET",
            format!("rtstream/{stream}/index/scene/{index}?page={page}"),
            None,
        ),
        Indexes::Start { stream, index } => status(
            format!("rtstream/{stream}/index/scene/{index}/status"),
            "start",
        ),
        Indexes::Stop { stream, index } => status(
            format!("rtstream/{stream}/index/scene/{index}/status"),
            "stop",
        ),
    }
}

/// Requests of the `events` commands.
pub fn events(c: Events) -> Call {
    match c {
        Events::List => ("GET", "rtstream/event".into(), None),
        Events::Create { prompt, label } => (
            "POST",
            "rtstream/event".into(),
            Some(json!({"event_prompt": prompt, "label": label})),
        ),
        Events::Delete { id } => ("DELETE", format!("rtstream/event/{id}"), None),
    }
}

#[derive(Subcommand, Debug)]
pub enum Fleet {
    /// Boxes of the site with their capacity and cameras, which box runs
    /// each camera and how fresh its lease is, cameras that fit nowhere.
    Status,
    /// Move a box's cameras to the other boxes before maintenance; each
    /// keeps running on it until another box has taken it over. The box
    /// takes no cameras until `undrain`.
    Drain { box_id: String },
    /// Let a drained box take cameras again.
    Undrain { box_id: String },
}

/// Requests of the `fleet` commands.
pub fn fleet(c: Fleet) -> Call {
    let drain = |id: &str| format!("fleet/boxes/{id}/drain");
    match c {
        Fleet::Status => ("GET", "fleet".into(), None),
        Fleet::Drain { box_id } => ("POST", drain(&box_id), None),
        Fleet::Undrain { box_id } => ("DELETE", drain(&box_id), None),
    }
}

/// Requests of the `alerts` commands.
pub fn alerts(c: Alerts) -> Call {
    match c {
        Alerts::List => ("GET", "alert".into(), None),
        Alerts::Create {
            stream,
            index,
            event,
            callback_url,
            mqtt_topic,
        } => (
            "POST",
            format!("rtstream/{stream}/index/{index}/alert"),
            Some(
                json!({"event_id": event, "callback_url": callback_url, "mqtt_topic": mqtt_topic}),
            ),
        ),
        Alerts::Enable { id } => status(format!("alert/{id}/status"), "enable"),
        Alerts::Disable { id } => status(format!("alert/{id}/status"), "disable"),
        Alerts::Delete { id } => ("DELETE", format!("alert/{id}"), None),
    }
}

fn status(path: String, action: &str) -> Call {
    ("PATCH", path, Some(json!({ "action": action })))
}

/// Base URL and key for `t`.
pub fn resolve(t: &Target) -> anyhow::Result<(String, String)> {
    let config = if t.api.is_none() || t.key_file.is_none() {
        Some(Config::load(&t.config).map_err(|e| anyhow!("{e}"))?)
    } else {
        None
    };
    let base = match (&t.api, &config) {
        (Some(u), _) => u.trim_end_matches('/').to_string(),
        (None, Some(c)) => {
            let api = c
                .api
                .as_ref()
                .ok_or_else(|| anyhow!("{}: the API is off ([api] absent)", t.config.display()))?;
            let mut addr = api.listen;
            if addr.ip().is_unspecified() {
                addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
            }
            format!("http://{addr}")
        }
        (None, None) => unreachable_config()?,
    };
    let key_path = match (
        &t.key_file,
        std::env::var_os("SIGHTLINE_API_KEY_FILE"),
        &config,
    ) {
        (Some(p), _, _) => p.clone(),
        (None, Some(p), _) => PathBuf::from(p),
        (None, None, Some(c)) => {
            let api = c
                .api
                .as_ref()
                .ok_or_else(|| anyhow!("{}: the API is off", t.config.display()))?;
            let state = c.state.dir.clone().unwrap_or_else(default_state_dir);
            crate::api::key_path(api, Some(&state))?
        }
        (None, None, None) => unreachable_config()?,
    };
    let key = read_key(&key_path)?;
    Ok((base, key))
}

fn unreachable_config<T>() -> anyhow::Result<T> {
    Err(anyhow!("give --config, or both --api and --key-file"))
}

fn read_key(p: &Path) -> anyhow::Result<String> {
    Ok(std::fs::read_to_string(p)
        .with_context(|| format!("reading the API key from {}", p.display()))?
        .trim()
        .to_string())
}

/// `$STATE_DIRECTORY` (systemd) or `/var/lib/sightline`.
pub fn default_state_dir() -> PathBuf {
    std::env::var_os("STATE_DIRECTORY")
        .map(|d| {
            // systemd may list several, separated by ':'.
            let s = d.to_string_lossy().to_string();
            PathBuf::from(s.split(':').next().unwrap_or_default())
        })
        .unwrap_or_else(|| PathBuf::from("/var/lib/sightline"))
}

/// Sends one call and returns the reply's `data`, or why not.
pub async fn send(base: &str, key: &str, (method, path, body): Call) -> Result<Value, CallError> {
    let http = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(30))
        .build()
        .map_err(|e| CallError::Other(e.into()))?;
    let url = format!("{base}/{path}");
    let method =
        reqwest::Method::from_bytes(method.as_bytes()).map_err(|e| CallError::Other(e.into()))?;
    let mut req = http.request(method, &url).header("x-access-token", key);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.map_err(|e| CallError::Unreachable {
        base: base.to_string(),
        reason: format!("{:#}", anyhow::Error::from(e)),
    })?;
    let code = resp.status();
    let v: Value = resp
        .json()
        .await
        .with_context(|| format!("{url}: reply is not JSON ({code})"))
        .map_err(CallError::Other)?;
    if code.is_success() {
        Ok(v.get("data").cloned().unwrap_or(Value::Null))
    } else {
        Err(CallError::Refused {
            code: code.as_u16(),
            message: v
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or("no message")
                .to_string(),
        })
    }
}
