//! Validation of the sections that configure the daemon itself rather
//! than its cameras and rules: `[runtime]`, `[mqtt]`, `[webhook]`, `[api]`,
//! `[state]` and `[recording]`. Same rules as `validate.rs`: every problem
//! is collected with its path.

use std::path::PathBuf;
use std::time::Duration;

use super::raw::{RawApi, RawState};
use super::validate::{topic, Checker, DEFAULT_LISTEN};
use super::*;

pub(super) fn runtime(c: &mut Checker, r: &super::raw::RawRuntime, streams: usize) -> Runtime {
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get()) as i64;

    let workers = c.int("runtime.workers", r.workers, 1, 1, 64) as usize;
    let intra_default = (cores / workers as i64).max(1);
    Runtime {
        workers,
        intra_threads: c.int(
            "runtime.intra_threads",
            r.intra_threads,
            intra_default,
            1,
            256,
        ) as usize,
        queue_capacity: c.int(
            "runtime.queue_capacity",
            r.queue_capacity,
            // Cameras started together deliver keyframes together: room for
            // two frames per stream absorbs that burst without drops.
            (2 * streams as i64).max(4 * workers as i64).max(8),
            1,
            100_000,
        ) as usize,
        max_frame_age: Duration::from_millis(c.int(
            "runtime.max_frame_age_ms",
            r.max_frame_age_ms,
            800,
            10,
            600_000,
        ) as u64),
        stats_interval: match c.int(
            "runtime.stats_interval_secs",
            r.stats_interval_secs,
            60,
            0,
            86_400,
        ) {
            0 => None,
            s => Some(Duration::from_secs(s as u64)),
        },
        ort_library: r.ort_library.as_ref().map(PathBuf::from),
        streaming_nice: c.int("runtime.streaming_nice", r.streaming_nice, 5, 0, 19) as i32,
    }
}

pub(super) fn mqtt(c: &mut Checker, m: super::raw::RawMqtt) -> MqttSettings {
    let (credentials, tls) = (mqtt_credentials(c, &m), mqtt_tls(c, &m));
    let discovery = m.discovery.unwrap_or(false).then(|| {
        let prefix = m
            .discovery_prefix
            .clone()
            .unwrap_or_else(|| "homeassistant".into());
        topic(c, "mqtt.discovery_prefix", prefix)
    });
    if discovery.is_some() && m.control == Some(false) {
        c.bad(
            "mqtt.control",
            "Home Assistant's switches need the control topics: control = false cannot go with discovery = true",
        );
    }
    MqttSettings {
        control: discovery.is_some() || m.control.unwrap_or(false),
        discovery,
        credentials,
        tls,
        host: m.host.unwrap_or_else(|| "127.0.0.1".into()),
        port: c.int(
            "mqtt.port",
            m.port,
            if m.tls == Some(true) || m.ca_file.is_some() {
                8883
            } else {
                1883
            },
            1,
            65535,
        ) as u16,
        client_id: match m.client_id {
            Some(id) if !id.is_empty() && id.len() <= 64 => id,
            Some(id) => {
                c.bad("mqtt.client_id", format!("{id:?} must be 1-64 bytes"));
                id
            }
            None => "sightline".into(),
        },
        keep_alive: Duration::from_secs(c.int(
            "mqtt.keep_alive_secs",
            m.keep_alive_secs,
            30,
            5,
            3600,
        ) as u64),
        topic: m
            .topic
            .map(|t| topic(c, "mqtt.topic", t))
            .unwrap_or_else(|| DEFAULT_TOPIC.into()),
        status_topic: m
            .status_topic
            .map(|t| topic(c, "mqtt.status_topic", t))
            .unwrap_or_else(|| "sightline/status".into()),
    }
}

pub(super) fn webhook(c: &mut Checker, w: &super::raw::RawWebhook) -> WebhookConfig {
    WebhookConfig {
        timeout: Duration::from_millis(
            c.int("webhook.timeout_ms", w.timeout_ms, 2000, 50, 120_000) as u64,
        ),
        schedule: schedule(c, w.retry_schedule_secs.as_deref()),
        allow_private: w
            .allow_private
            .iter()
            .flatten()
            .enumerate()
            .filter_map(|(i, r)| {
                crate::domain::Cidr::parse(r)
                    .map_err(|m| c.bad(format!("webhook.allow_private[{i}]"), m))
                    .ok()
            })
            .collect(),
        concurrency: c.int("webhook.concurrency", w.concurrency, 4, 1, 256) as usize,
    }
}

pub(super) fn mqtt_credentials(
    c: &mut Checker,
    m: &super::raw::RawMqtt,
) -> Option<(String, String)> {
    match (&m.username, &m.password_file) {
        (None, None) => None,
        (Some(u), None) => Some((u.clone(), String::new())),
        (None, Some(_)) => {
            c.bad("mqtt.password_file", "a password needs a username");
            None
        }
        (Some(u), Some(f)) => match std::fs::read_to_string(f) {
            Ok(p) => Some((u.clone(), p.trim_end_matches(['\r', '\n']).to_string())),
            Err(e) => {
                c.bad("mqtt.password_file", format!("cannot read {f}: {e}"));
                None
            }
        },
    }
}

pub(super) fn mqtt_tls(c: &mut Checker, m: &super::raw::RawMqtt) -> Option<Option<Vec<u8>>> {
    match (&m.ca_file, m.tls) {
        (Some(_), Some(false)) => {
            c.bad("mqtt.ca_file", "given while tls = false");
            None
        }
        (Some(f), _) => match std::fs::read(f) {
            Ok(pem) if pem.starts_with(b"-----BEGIN") => Some(Some(pem)),
            Ok(_) => {
                c.bad("mqtt.ca_file", format!("{f} is not a PEM certificate"));
                None
            }
            Err(e) => {
                c.bad("mqtt.ca_file", format!("cannot read {f}: {e}"));
                None
            }
        },
        (None, Some(true)) => Some(None),
        (None, _) => None,
    }
}

pub(super) fn schedule(c: &mut Checker, s: Option<&[f64]>) -> Vec<Duration> {
    let Some(s) = s else {
        return crate::domain::DEFAULT_SCHEDULE.to_vec();
    };
    if s.is_empty() || s.len() > 100 {
        c.bad(
            "webhook.retry_schedule_secs",
            format!("must list 1-100 waits, got {}", s.len()),
        );
    }
    s.iter()
        .enumerate()
        .map(|(i, &w)| {
            if !(w.is_finite() && (0.0..=7.0 * 86_400.0).contains(&w)) {
                c.bad(
                    format!("webhook.retry_schedule_secs[{i}]"),
                    format!("must be between 0 and 604800 seconds, got {w}"),
                );
                return Duration::ZERO;
            }
            Duration::from_secs_f64(w)
        })
        .collect()
}

pub(super) fn recording(
    c: &mut Checker,
    r: &super::raw::RawRecording,
    state: Option<&std::path::Path>,
) -> RecordSettings {
    let secs = |c: &mut Checker, key: &str, v: Option<f64>, default: f64, lo: f64, hi: f64| {
        Duration::from_secs_f64(c.float(&format!("recording.{key}"), v, default, lo, hi))
    };
    let dir = match (r.enabled, &r.dir) {
        (Some(false), _) => None,
        (_, Some(d)) => Some(PathBuf::from(d)),
        (_, None) => state.map(|s| s.join("recordings")),
    };
    if r.enabled == Some(true) && dir.is_none() {
        c.bad(
            "recording.dir",
            "recording needs a directory: set recording.dir or state.dir",
        );
    }
    let gb = c.float("recording.max_gb", r.max_gb, 10.0, 0.0, 100_000.0);
    let mb = c.float(
        "recording.min_free_mb",
        r.min_free_mb,
        64.0,
        0.0,
        1_000_000.0,
    );
    RecordSettings {
        dir,
        segment: secs(c, "segment_secs", r.segment_secs, 2.0, 0.5, 60.0),
        max_bytes: (gb * 1e9) as u64,
        max_age: secs(
            c,
            "max_hours",
            r.max_hours.map(|h| h * 3600.0),
            24.0 * 3600.0,
            60.0,
            1e8,
        ),
        clip_keep: secs(
            c,
            "clip_days",
            r.clip_days.map(|d| d * 86_400.0),
            7.0 * 86_400.0,
            0.0,
            1e9,
        ),
        pre: secs(c, "pre_secs", r.pre_secs, 5.0, 0.0, 300.0),
        post: secs(c, "post_secs", r.post_secs, 5.0, 0.0, 300.0),
        min_free_bytes: (mb * 1e6) as u64,
        url_ttl: secs(
            c,
            "url_hours",
            r.url_hours.map(|h| h * 3600.0),
            168.0 * 3600.0,
            60.0,
            1e9,
        ),
    }
}

pub(super) fn api(c: &mut Checker, a: &RawApi) -> Option<ApiConfig> {
    if a.enabled == Some(false) {
        return None;
    }
    let listen_text = a.listen.as_deref().unwrap_or(DEFAULT_LISTEN);
    let listen = listen_text.parse().unwrap_or_else(|_| {
        c.bad(
            "api.listen",
            format!("{listen_text:?} is not an address such as 127.0.0.1:8420"),
        );
        std::net::SocketAddr::from(([127, 0, 0, 1], 8420))
    });
    Some(ApiConfig {
        listen,
        key_file: a.key_file.as_ref().map(PathBuf::from),
        ws_buffer: c.int("api.ws_buffer", a.ws_buffer, 256, 1, 1_000_000) as usize,
        ws_resume_messages: c.int(
            "api.ws_resume_messages",
            a.ws_resume_messages,
            10_000,
            1,
            10_000_000,
        ) as u64,
        ws_resume: std::time::Duration::from_secs_f64(
            3600.0
                * c.float(
                    "api.ws_resume_hours",
                    a.ws_resume_hours,
                    24.0,
                    0.01,
                    24.0 * 365.0,
                ),
        ),
        allow_local_sources: a.allow_local_sources.unwrap_or(false),
        metrics_public: a.metrics_public.unwrap_or(false),
        public_url: a.public_url.as_ref().and_then(|u| {
            let ok = (u.starts_with("http://") || u.starts_with("https://"))
                && url::Url::parse(u).is_ok_and(|p| p.host().is_some() && p.path() == "/");
            if !ok {
                c.bad(
                    "api.public_url",
                    format!("{u:?} must be http(s)://host[:port] with no path"),
                );
            }
            ok.then(|| u.trim_end_matches('/').to_string())
        }),
    })
}

pub(super) fn state(c: &mut Checker, s: &RawState) -> StateConfig {
    StateConfig {
        dir: s.dir.as_ref().map(PathBuf::from),
        scene_records: c.int(
            "state.scene_records",
            s.scene_records,
            10_000,
            0,
            10_000_000,
        ) as usize,
        max_dead_letters: c.int(
            "state.max_dead_letters",
            s.max_dead_letters,
            10_000,
            1,
            10_000_000,
        ) as usize,
        max_objects: c.int("state.max_objects", s.max_objects, 10_000, 1, 1_000_000) as usize,
        embedding_hours: c.float(
            "state.embedding_hours",
            s.embedding_hours,
            24.0,
            0.0,
            24.0 * 366.0,
        ),
        min_free_bytes: (c.float("state.min_free_mb", s.min_free_mb, 64.0, 0.0, 1_000_000.0) * 1e6)
            as u64,
        on_corruption: match s.on_corruption.as_deref() {
            None | Some("refuse") => crate::domain::OnCorruption::Refuse,
            Some("rebuild") => crate::domain::OnCorruption::Rebuild,
            Some(other) => {
                c.bad(
                    "state.on_corruption",
                    format!("{other:?} must be \"refuse\" or \"rebuild\""),
                );
                crate::domain::OnCorruption::Refuse
            }
        },
    }
}
