//! Turns a [`RawConfig`] into a [`Config`], pushing one [`Problem`] per bad
//! value instead of stopping at the first.

use std::collections::HashSet;
use std::path::PathBuf;
use std::time::Duration;

use super::raw::{RawAlert, RawEvent, RawMotion, RawRegion, RawStream};
use super::sections::{api, mqtt, recording, runtime, state, webhook};
use super::*;
use crate::domain::{AlertId, EventId, StreamId};

pub(super) struct Checker<'a> {
    problems: &'a mut Vec<Problem>,
}

impl Checker<'_> {
    pub(super) fn bad(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.problems.push(Problem {
            path: path.into(),
            message: message.into(),
        });
    }

    /// An integer in `lo..=hi`, or the default.
    pub(super) fn int(
        &mut self,
        path: &str,
        v: Option<i64>,
        default: i64,
        lo: i64,
        hi: i64,
    ) -> i64 {
        match v {
            None => default,
            Some(x) if (lo..=hi).contains(&x) => x,
            Some(x) => {
                self.bad(path, format!("must be between {lo} and {hi}, got {x}"));
                default
            }
        }
    }

    /// A float in `(lo, hi]` (or `[lo, hi]` when `lo_inclusive`), or the default.
    pub(super) fn float(
        &mut self,
        path: &str,
        v: Option<f64>,
        default: f64,
        lo: f64,
        hi: f64,
    ) -> f64 {
        match v {
            None => default,
            Some(x) if x.is_finite() && x >= lo && x <= hi => x,
            Some(x) => {
                self.bad(path, format!("must be between {lo} and {hi}, got {x}"));
                default
            }
        }
    }

    /// A required id made of letters, digits, `_`, `-` and `.` (safe in MQTT topics and URLs).
    pub(super) fn id(&mut self, path: &str, v: &Option<String>) -> String {
        match v {
            None => {
                self.bad(path, "is required");
                String::new()
            }
            Some(s) if valid_id(s) => s.clone(),
            Some(s) => {
                self.bad(
                    path,
                    format!("{s:?} must be 1-64 characters of letters, digits, '_', '-' or '.'"),
                );
                s.clone()
            }
        }
    }
}

/// Whether `s` is usable as a stream, event or alert id.
/// Whether free text (a name, a prompt) is free of control characters:
/// NUL, newlines and escapes have no place in a name that ends up in logs,
/// payloads and file names.
pub fn plain_text(s: &str) -> bool {
    !s.chars().any(char::is_control)
}

pub fn valid_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

/// Validates one stream definition (an API body or a stored row).
pub fn check_stream(s: &RawStream) -> Result<StreamSpec, Vec<Problem>> {
    let mut problems = Vec::new();
    let v = stream(
        &mut Checker {
            problems: &mut problems,
        },
        "stream",
        s,
        &mut HashSet::new(),
    );
    problems.is_empty().then_some(v).ok_or(problems)
}

/// Validates one event definition.
pub fn check_event(e: &RawEvent) -> Result<EventSpec, Vec<Problem>> {
    let mut problems = Vec::new();
    let v = event(
        &mut Checker {
            problems: &mut problems,
        },
        "event",
        e,
        &mut HashSet::new(),
    );
    problems.is_empty().then_some(v).ok_or(problems)
}

/// Validates one alert definition against the known events and streams.
/// `ws_connection` is an extra target that API-created alerts may have.
pub fn check_alert(
    a: &RawAlert,
    events: &HashSet<String>,
    streams: &HashSet<String>,
    mqtt: Option<&MqttSettings>,
    ws_connection: Option<String>,
) -> Result<AlertSpec, Vec<Problem>> {
    let mut problems = Vec::new();
    let has_ws = ws_connection.is_some();
    let mut v = alert(
        &mut Checker {
            problems: &mut problems,
        },
        "alert",
        a,
        &mut HashSet::new(),
        &Known {
            events,
            streams,
            mqtt,
            has_ws,
        },
    );
    v.ws_connection = ws_connection;
    problems.is_empty().then_some(v).ok_or(problems)
}

pub(super) fn validate(raw: RawConfig, problems: &mut Vec<Problem>) -> Config {
    let mut c = Checker { problems };
    let runtime = runtime(&mut c, &raw.runtime, raw.streams.len());

    let models = models(&mut c, &raw);

    let mut stream_ids = HashSet::new();
    let streams: Vec<StreamSpec> = raw
        .streams
        .iter()
        .enumerate()
        .map(|(i, s)| stream(&mut c, &format!("streams[{i}]"), s, &mut stream_ids))
        .collect();

    let mut event_ids = HashSet::new();
    let events: Vec<EventSpec> = raw
        .events
        .iter()
        .enumerate()
        .map(|(i, e)| event(&mut c, &format!("events[{i}]"), e, &mut event_ids))
        .collect();

    let mqtt = raw.mqtt.map(|m| mqtt(&mut c, m));

    let mut alert_ids = HashSet::new();
    let alerts: Vec<AlertSpec> = raw
        .alerts
        .iter()
        .enumerate()
        .map(|(i, a)| {
            let path = format!("alerts[{i}]");
            alert(
                &mut c,
                &path,
                a,
                &mut alert_ids,
                &Known {
                    events: &event_ids,
                    streams: &stream_ids,
                    mqtt: mqtt.as_ref(),
                    has_ws: false,
                },
            )
        })
        .collect();

    let webhook = webhook(&mut c, &raw.webhook);
    let api = raw.api.as_ref().and_then(|a| api(&mut c, a));
    let state = state(&mut c, &raw.state);
    let recording = recording(&mut c, &raw.recording, state.dir.as_deref());
    let fleet = raw
        .fleet
        .as_ref()
        .and_then(|f| super::fleet::fleet(&mut c, f));
    Config {
        fleet,
        runtime,
        models,
        streams,
        events,
        alerts,
        mqtt,
        webhook,
        api,
        state,
        recording,
        declared: Declared {
            streams: raw.streams,
            events: raw.events,
            alerts: raw.alerts,
        },
    }
}

/// Default API address: loopback only.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8420";

fn stream(c: &mut Checker, p: &str, s: &RawStream, seen: &mut HashSet<String>) -> StreamSpec {
    let id = c.id(&format!("{p}.id"), &s.id);
    if !id.is_empty() && !seen.insert(id.clone()) {
        c.bad(format!("{p}.id"), format!("duplicate stream id {id:?}"));
    }
    let url = match &s.url {
        None => {
            c.bad(format!("{p}.url"), "is required");
            SourceUrl::Test("smpte".into())
        }
        Some(u) => parse_source(u).unwrap_or_else(|m| {
            c.bad(format!("{p}.url"), m);
            SourceUrl::Test("smpte".into())
        }),
    };
    let transport = match s.transport.as_deref() {
        None | Some("tcp") => Transport::Tcp,
        Some("udp") => Transport::Udp,
        Some(t) => {
            c.bad(
                format!("{p}.transport"),
                format!("must be \"tcp\" or \"udp\", got {t:?}"),
            );
            Transport::Tcp
        }
    };
    StreamSpec {
        id: StreamId::new(id),
        url,
        fps: c.float(&format!("{p}.fps"), s.fps, 2.0, 0.01, 60.0),
        keyframes_only: s.keyframes_only.unwrap_or(false),
        transport,
        stall_timeout: Duration::from_secs_f64(c.float(
            &format!("{p}.stall_timeout_secs"),
            s.stall_timeout_secs,
            10.0,
            1.0,
            3600.0,
        )),
        max_backoff: Duration::from_secs_f64(c.float(
            &format!("{p}.max_backoff_secs"),
            s.max_backoff_secs,
            30.0,
            0.1,
            3600.0,
        )),
        record_url: s.record_url.as_ref().and_then(|u| {
            parse_source(u)
                .map_err(|m| c.bad(format!("{p}.record_url"), m))
                .ok()
        }),
        record: s.record,
        motion: s
            .motion
            .as_ref()
            .map(|m| motion(c, &format!("{p}.motion"), m))
            .unwrap_or_default(),
    }
}

fn motion(c: &mut Checker, p: &str, m: &RawMotion) -> MotionSpec {
    let masks = m.masks.clone().unwrap_or_default();
    for (i, mask) in masks.iter().enumerate() {
        let raw = RawRegion {
            name: None,
            points: Some(mask.clone()),
        };
        region(c, &format!("{p}.masks[{i}]"), &raw);
    }
    MotionSpec {
        enabled: m.enabled.unwrap_or(true),
        sensitivity: c.float(&format!("{p}.sensitivity"), m.sensitivity, 0.5, 0.0, 1.0) as f32,
        max_unscored_secs: c.float(
            &format!("{p}.max_unscored_secs"),
            m.max_unscored_secs,
            3.0,
            0.1,
            3600.0,
        ),
        masks: masks
            .iter()
            .map(|m| m.iter().map(|[x, y]| (*x as f32, *y as f32)).collect())
            .collect(),
        compressed: m.compressed.unwrap_or(true),
        compressed_sensitivity: c.float(
            &format!("{p}.compressed_sensitivity"),
            m.compressed_sensitivity,
            0.5,
            0.0,
            1.0,
        ) as f32,
    }
}

/// Parses a stream URL: `rtsp://`, `rtsps://`, `file://` or `test:`.
pub fn parse_source(u: &str) -> Result<SourceUrl, String> {
    if let Some(rest) = u
        .strip_prefix("rtsp://")
        .or_else(|| u.strip_prefix("rtsps://"))
    {
        let host = rest.split(['/', '?']).next().unwrap_or("");
        let host = host.rsplit('@').next().unwrap_or("");
        if host.is_empty() || rest.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(format!(
                "{u:?} is not a valid RTSP URL (no host, or spaces in it)"
            ));
        }
        Ok(SourceUrl::Rtsp(u.to_string()))
    } else if let Some(path) = u.strip_prefix("file://") {
        if path.is_empty() {
            return Err("file:// URL has no path".into());
        }
        Ok(SourceUrl::File(PathBuf::from(path)))
    } else if let Some(pattern) = u.strip_prefix("test:") {
        let pattern = if pattern.is_empty() { "smpte" } else { pattern };
        if !pattern
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-')
        {
            return Err(format!(
                "test pattern {pattern:?} is not a videotestsrc pattern name"
            ));
        }
        Ok(SourceUrl::Test(pattern.to_string()))
    } else {
        Err(format!(
            "{u:?} must start with rtsp://, rtsps://, file:// or test:"
        ))
    }
}

fn event(c: &mut Checker, p: &str, e: &RawEvent, seen: &mut HashSet<String>) -> EventSpec {
    let id = c.id(&format!("{p}.id"), &e.id);
    if !id.is_empty() && !seen.insert(id.clone()) {
        c.bad(format!("{p}.id"), format!("duplicate event id {id:?}"));
    }
    let prompt = e.prompt.clone().unwrap_or_default();
    if prompt.trim().is_empty() && e.classes.is_none() {
        c.bad(
            format!("{p}.prompt"),
            "is required unless classes are given",
        );
    }
    if !plain_text(&prompt) {
        c.bad(format!("{p}.prompt"), "must not contain control characters");
    }
    let label = match &e.label {
        Some(l) if valid_id(l) => l.clone(),
        Some(l) => {
            c.bad(
                format!("{p}.label"),
                format!("{l:?} must be 1-64 characters of letters, digits, '_', '-' or '.'"),
            );
            l.clone()
        }
        None => id.clone(),
    };
    if let Some(cl) = &e.classes {
        if cl.is_empty() {
            c.bad(
                format!("{p}.classes"),
                "must not be empty (leave it out to resolve from the prompt)",
            );
        }
    }
    let negatives = e.negatives.clone().unwrap_or_default();
    if negatives.len() > 32 {
        c.bad(
            format!("{p}.negatives"),
            format!("at most 32 negative prompts, got {}", negatives.len()),
        );
    }
    for (i, n) in negatives.iter().enumerate() {
        if n.trim().is_empty() || n.chars().count() > 1000 || !plain_text(n) {
            c.bad(
                format!("{p}.negatives[{i}]"),
                "must be 1-1000 characters of text",
            );
        }
    }
    let matching = matching(c, p, e);
    let objects = super::tracking::object_rules(c, p, e);
    EventSpec {
        id: EventId::new(id),
        prompt,
        label,
        classes: e.classes.clone(),
        model: e.model.clone(),
        min_confidence: e
            .min_confidence
            .map(|v| c.float(&format!("{p}.min_confidence"), Some(v), 0.5, 0.0, 1.0) as f32),
        min_count: c.int(&format!("{p}.min_count"), e.min_count, 1, 1, 1000) as usize,
        min_area: c.float(&format!("{p}.min_area"), e.min_area, 0.0, 0.0, 1.0) as f32,
        region: e
            .region
            .as_ref()
            .map(|r| region(c, &format!("{p}.region"), r)),
        negatives,
        min_lift: c.float(&format!("{p}.min_lift"), e.min_lift, 2.0, 0.0, 100.0) as f32,
        baseline_secs: c.float(
            &format!("{p}.baseline_secs"),
            e.baseline_secs,
            600.0,
            1.0,
            86_400.0,
        ),
        matching,
        objects,
    }
}

/// `[model]` (one model) or `[[models]]` (several, with unique names), or
/// the defaults when neither is given.
fn models(c: &mut Checker, raw: &RawConfig) -> Vec<ModelEntry> {
    if raw.models.is_empty() {
        return match &raw.model.path {
            Some(path) => {
                let name = std::path::Path::new(path)
                    .file_name()
                    .map(|n| n.to_string_lossy().to_string())
                    .filter(|n| valid_id(n))
                    .unwrap_or_else(|| "model".into());
                vec![ModelEntry {
                    name,
                    path: path.clone(),
                    placement: Placement::default(),
                    precision: precision(c, "model.precision", raw.model.precision.as_deref()),
                }]
            }
            None => ModelEntry::defaults(),
        };
    }
    if raw.model.path.is_some() {
        c.bad(
            "model",
            "give either [model] or [[models]], not both (a [[models]] entry per model)",
        );
    }
    let mut names = HashSet::new();
    let mut out = Vec::new();
    for (i, m) in raw.models.iter().enumerate() {
        let p = format!("models[{i}]");
        let (Some(name), Some(path)) = (&m.name, &m.path) else {
            c.bad(p, "needs a name and a path");
            continue;
        };
        if !valid_id(name) {
            c.bad(format!("{p}.name"), format!("{name:?} is not a valid name"));
        } else if !names.insert(name.clone()) {
            c.bad(
                format!("{p}.name"),
                format!("two models are called {name:?}: names must be unique"),
            );
        }
        let provider = match m.provider.as_deref() {
            None => Provider::Cpu,
            Some(want) => Provider::ALL
                .iter()
                .find(|(n, _)| *n == want)
                .map(|(_, p)| *p)
                .unwrap_or_else(|| {
                    c.bad(
                        format!("{p}.provider"),
                        format!("{want:?} must be \"cpu\", \"cuda\", \"tensorrt\" or \"openvino\""),
                    );
                    Provider::Cpu
                }),
        };
        let cpu_fallback = match m.fallback.as_deref() {
            None | Some("none") => false,
            Some("cpu") => true,
            Some(other) => {
                c.bad(
                    format!("{p}.fallback"),
                    format!("{other:?} must be \"cpu\" or \"none\""),
                );
                false
            }
        };
        out.push(ModelEntry {
            name: name.clone(),
            path: path.clone(),
            placement: Placement {
                provider,
                cpu_fallback,
            },
            precision: precision(c, &format!("{p}.precision"), m.precision.as_deref()),
        });
    }
    out
}

/// A model's `precision`: "int8", "fp32" or unset (the folder's choice).
fn precision(c: &mut Checker, key: &str, value: Option<&str>) -> Option<Precision> {
    let want = value?;
    let p = Precision::parse(want);
    if p.is_none() {
        c.bad(key, format!("{want:?} must be \"int8\" or \"fp32\""));
    }
    p
}

/// The k-of-n start, end and cooldown rules of an event.
fn matching(c: &mut Checker, p: &str, e: &RawEvent) -> MatchParams {
    let defaults = MatchParams::default();
    let k = c.int(&format!("{p}.k"), e.k, defaults.k as i64, 1, 100) as usize;
    let window = c.int(
        &format!("{p}.window"),
        e.window,
        defaults.window.max(k) as i64,
        1,
        100,
    ) as usize;
    if k > window {
        c.bad(
            format!("{p}.k"),
            format!("k ({k}) must not exceed window ({window})"),
        );
    }
    MatchParams {
        k,
        window,
        end_after: c.int(
            &format!("{p}.end_after"),
            e.end_after,
            defaults.end_after as i64,
            1,
            1000,
        ) as usize,
        max_duration: c.float(
            &format!("{p}.max_duration_secs"),
            e.max_duration_secs,
            defaults.max_duration,
            0.1,
            86_400.0,
        ),
        cooldown: c.float(
            &format!("{p}.cooldown_secs"),
            e.cooldown_secs,
            defaults.cooldown,
            0.0,
            86_400.0,
        ),
    }
}

fn region(c: &mut Checker, p: &str, r: &RawRegion) -> Region {
    let points = r.points.clone().unwrap_or_default();
    if points.len() < 3 {
        c.bad(
            format!("{p}.points"),
            format!("a region needs at least 3 points, got {}", points.len()),
        );
    }
    for (i, [x, y]) in points.iter().enumerate() {
        if !(0.0..=1.0).contains(x) || !(0.0..=1.0).contains(y) {
            c.bad(
                format!("{p}.points[{i}]"),
                format!("({x}, {y}) must be within 0..1 (normalised)"),
            );
        }
    }
    if r.name
        .as_deref()
        .is_some_and(|n| !plain_text(n) || n.chars().count() > 200)
    {
        c.bad(
            format!("{p}.name"),
            "must be up to 200 characters, with no control characters",
        );
    }
    Region {
        name: r.name.clone().unwrap_or_else(|| "region".into()),
        points: points.iter().map(|[x, y]| (*x as f32, *y as f32)).collect(),
    }
}

pub(super) fn topic(c: &mut Checker, p: &str, t: String) -> String {
    if t.is_empty() || t.contains(['+', '#', '\0']) {
        c.bad(
            p,
            format!("{t:?} is not a publishable MQTT topic (empty, or has + or #)"),
        );
    }
    t
}

/// What an alert may refer to.
struct Known<'a> {
    events: &'a HashSet<String>,
    streams: &'a HashSet<String>,
    mqtt: Option<&'a MqttSettings>,
    /// It has a WebSocket target (API alerts), so needs no other.
    has_ws: bool,
}

fn alert(
    c: &mut Checker,
    p: &str,
    a: &RawAlert,
    seen: &mut HashSet<String>,
    k: &Known,
) -> AlertSpec {
    let (events, streams, mqtt, has_ws) = (k.events, k.streams, k.mqtt, k.has_ws);
    let id = c.id(&format!("{p}.id"), &a.id);
    if !id.is_empty() && !seen.insert(id.clone()) {
        c.bad(format!("{p}.id"), format!("duplicate alert id {id:?}"));
    }
    let event = match &a.event {
        None => {
            c.bad(format!("{p}.event"), "is required");
            String::new()
        }
        Some(e) if !events.contains(e) => {
            c.bad(format!("{p}.event"), format!("no event with id {e:?}"));
            e.clone()
        }
        Some(e) => e.clone(),
    };
    let mut ids = Vec::new();
    for (i, s) in a.streams.iter().flatten().enumerate() {
        if !streams.contains(s) {
            c.bad(
                format!("{p}.streams[{i}]"),
                format!("no stream with id {s:?}"),
            );
        }
        ids.push(StreamId::new(s));
    }
    if let Some(u) = &a.callback_url {
        if let Err(m) = check_callback_url(u) {
            c.bad(format!("{p}.callback_url"), m);
        }
    }
    let mut webhook_secrets = Vec::new();
    for (i, s) in a.webhook_secrets.iter().flatten().enumerate() {
        match crate::domain::Secret::parse(s) {
            Ok(secret) => webhook_secrets.push(secret),
            Err(m) => c.bad(format!("{p}.webhook_secrets[{i}]"), m),
        }
    }
    if !webhook_secrets.is_empty() && a.callback_url.is_none() {
        c.bad(
            format!("{p}.webhook_secrets"),
            "signing secrets need a callback_url",
        );
    }
    let wants_mqtt = a.mqtt.unwrap_or(mqtt.is_some() || a.mqtt_topic.is_some());
    if wants_mqtt && mqtt.is_none() {
        c.bad(
            format!("{p}.mqtt"),
            "publishing over MQTT needs an [mqtt] section",
        );
    }
    let mqtt_topic = if wants_mqtt {
        Some(match &a.mqtt_topic {
            Some(t) => topic(c, &format!("{p}.mqtt_topic"), t.clone()),
            None => mqtt.map_or_else(|| DEFAULT_TOPIC.to_string(), |m| m.topic.clone()),
        })
    } else {
        None
    };
    if a.callback_url.is_none() && mqtt_topic.is_none() && !has_ws {
        c.bad(
            p.to_string(),
            "has no target: give a callback_url, or MQTT with an [mqtt] section",
        );
    }
    AlertSpec {
        id: AlertId::new(id),
        event: EventId::new(event),
        streams: ids,
        callback_url: a.callback_url.clone(),
        webhook_secrets,
        mqtt_topic,
        ws_connection: None,
        index: None,
        send_end: a.send_end.unwrap_or(true),
        enabled: a.enabled.unwrap_or(true),
    }
}

/// A callback URL must be absolute http(s) with a host and no credentials.
pub fn check_callback_url(u: &str) -> Result<(), String> {
    let url = reqwest::Url::parse(u).map_err(|e| format!("{u:?} is not a URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("{u:?} must be http or https"));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(format!("{u:?} has no host"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(
            "a callback_url must not carry credentials; use a signing secret instead".into(),
        );
    }
    Ok(())
}
