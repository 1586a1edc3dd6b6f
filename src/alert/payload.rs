//! The alert message body. One JSON shape serves MQTT, webhooks and (later)
//! WebSocket: VideoDB's field names (`event_id`, `label`, `confidence`,
//! `explanation`, `timestamp`, `start_time`, `end_time`, `stream_url`,
//! `player_url`), its other documented names for the same facts
//! (`event_label`, `rtstream_id`, `data.text`), and sightline's own ids.

use std::time::SystemTime;

use serde::Serialize;

use crate::domain::{AlertId, EventId, StreamId};
use crate::matcher::{Occurrence, Phase};

/// Which message of an occurrence this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MessagePhase {
    Start,
    End,
    /// The occurrence's clip is on disk and plays to its end.
    ClipReady,
}

impl From<Phase> for MessagePhase {
    fn from(p: Phase) -> Self {
        match p {
            Phase::Start => MessagePhase::Start,
            Phase::End => MessagePhase::End,
        }
    }
}

impl MessagePhase {
    pub fn as_str(self) -> &'static str {
        match self {
            MessagePhase::Start => "start",
            MessagePhase::End => "end",
            MessagePhase::ClipReady => "clip_ready",
        }
    }
}

/// Where an occurrence's evidence can be seen (signed URLs), when the
/// stream is recorded.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Links {
    /// JPEG of the frame shown (boxes drawn; `&boxes=false` for a clean one).
    pub snapshot_url: Option<String>,
    /// HLS playlist of the clip (live while the occurrence runs).
    pub stream_url: Option<String>,
    /// MP4 of the clip (complete once `clip_ready` is sent).
    pub clip_url: Option<String>,
    /// A page that plays the clip beside the alert's facts.
    pub player_url: Option<String>,
}

/// The JSON body of one alert message.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Payload {
    pub alert_id: AlertId,
    pub occurrence_id: String,
    pub phase: MessagePhase,
    pub event_id: EventId,
    pub label: String,
    pub event_label: String,
    /// The `[[models]]` name of the model that scored it.
    pub model: String,
    pub stream_id: StreamId,
    pub rtstream_id: StreamId,
    /// 0–1: the best detection score in the occurrence so far.
    pub confidence: f64,
    pub explanation: String,
    /// ISO 8601 UTC wall-clock time of the frame that caused this message.
    pub timestamp: String,
    /// Stream seconds of the first matching frame.
    pub start_time: f64,
    /// Stream seconds of the last matching frame (so far, at start).
    pub end_time: f64,
    /// Stream seconds of the frame that decided this message: after
    /// `start_time` by the k-of-n window, and by any cooldown that held the
    /// start back (a cooldown delays messages; it does not move
    /// `start_time`).
    pub decided_time: f64,
    /// HLS playlist of the clip (VideoDB: "HLS stream URL for the clip");
    /// null when the stream is not recorded.
    pub stream_url: Option<String>,
    /// Web player page of the clip.
    pub player_url: Option<String>,
    pub snapshot_url: Option<String>,
    pub clip_url: Option<String>,
    /// The camera's URL with any credentials removed.
    pub camera_url: String,
    /// The model's boxes in the frame shown (normalised x0, y0, x1, y1).
    pub boxes: Vec<crate::domain::Detection>,
    /// The tracked objects involved (track id, label, best score, first and
    /// last seen in stream seconds, box); empty for free-text events.
    pub objects: Vec<crate::matcher::TrackedObject>,
    /// `per = "object"` events and line crossings: the object's track id.
    pub track_id: Option<u64>,
    /// Line-crossing events: the object's track id, `direction` ("in" or
    /// "out") and the running `count` of crossings on this stream.
    pub crossing: Option<crate::matcher::Crossing>,
    /// Where the time went before this message was committed; null for
    /// `clip_ready` and for test alerts.
    pub latency_ms: Option<LatencyMs>,
    pub data: Data,
}

/// Milliseconds per stage for the frame behind a message. Delivery is the
/// receiver's to measure against `timestamp`; the outbox's fsync cannot be
/// in the bytes it writes (it is in `sightline_outbox_commit_seconds`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct LatencyMs {
    /// Waiting in the inference queue.
    pub queue: f64,
    /// In the model (0 when motion gating repeated the last results).
    pub infer: f64,
    /// From the end of inference to the occurrence.
    #[serde(rename = "match")]
    pub matched: f64,
    /// From the occurrence to the outbox write (evidence capture included).
    pub commit: f64,
}

fn latency(occ: &Occurrence, phase: MessagePhase) -> Option<LatencyMs> {
    let at = occ
        .timing
        .matched_at
        .filter(|_| phase != MessagePhase::ClipReady)?;
    let ms = |d: std::time::Duration| (d.as_secs_f64() * 10_000.0).round() / 10.0;
    Some(LatencyMs {
        queue: ms(occ.timing.queue),
        infer: ms(occ.timing.infer),
        matched: ms(occ.timing.matched),
        commit: ms(at.elapsed()),
    })
}

/// VideoDB's `data` object.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Data {
    pub text: String,
}

/// Builds the payload of `occ` for one alert.
pub fn build(
    alert: &AlertId,
    occ: &Occurrence,
    phase: MessagePhase,
    camera_url: &str,
    links: &Links,
) -> Payload {
    Payload {
        alert_id: alert.clone(),
        occurrence_id: occ.occurrence_id.clone(),
        phase,
        event_id: occ.event_id.clone(),
        label: occ.label.clone(),
        event_label: occ.label.clone(),
        model: occ.model.to_string(),
        stream_id: occ.stream_id.clone(),
        rtstream_id: occ.stream_id.clone(),
        confidence: round_ms(occ.confidence.clamp(0.0, 1.0) as f64),
        explanation: occ.explanation.clone(),
        timestamp: iso8601(occ.frame_wall),
        start_time: round_ms(occ.start_time),
        end_time: round_ms(occ.end_time),
        decided_time: round_ms(occ.frame_time),
        stream_url: links.stream_url.clone(),
        player_url: links.player_url.clone(),
        snapshot_url: links.snapshot_url.clone(),
        clip_url: links.clip_url.clone(),
        camera_url: redact(camera_url),
        boxes: occ.boxes.clone(),
        objects: occ.objects.clone(),
        track_id: occ.track_id,
        crossing: occ.crossing,
        latency_ms: latency(occ, phase),
        data: Data {
            text: occ.explanation.clone(),
        },
    }
}

fn round_ms(t: f64) -> f64 {
    (t * 1000.0).round() / 1000.0
}

/// `2026-11-23T15:47:00.123Z`.
pub fn iso8601(t: SystemTime) -> String {
    chrono::DateTime::<chrono::Utc>::from(t)
        .format("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string()
}

/// Removes `user:password@` from a URL so camera credentials never leave the box.
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let auth_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..auth_end].rfind('@') {
        Some(at) => format!("{scheme}://{}", &rest[at + 1..]),
        None => url.to_string(),
    }
}

/// Fills `{stream}` and `{label}` in an MQTT topic template.
pub fn topic(template: &str, stream: &StreamId, label: &str) -> String {
    template
        .replace("{stream}", stream.as_str())
        .replace("{label}", label)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant, UNIX_EPOCH};

    fn occ(phase: Phase) -> Occurrence {
        Occurrence {
            occurrence_id: "occ-1".into(),
            phase,
            event_id: EventId::new("person"),
            label: "security_alert".into(),
            model: "person".into(),
            stream_id: StreamId::new("gate"),
            start_time: 10.5004,
            end_time: 11.0,
            confidence: 0.96789,
            count: 2,
            explanation: "2 people detected (best 0.97)".into(),
            frame_wall: UNIX_EPOCH + Duration::from_millis(1_795_000_000_123),
            frame_arrived: Instant::now(),
            frame_time: 11.0,
            picture: None,
            boxes: Vec::new(),
            objects: Vec::new(),
            track_id: None,
            crossing: None,
            timing: Default::default(),
        }
    }

    #[test]
    fn payload_has_every_documented_field() {
        let p = build(
            &AlertId::new("a1"),
            &occ(Phase::Start),
            MessagePhase::Start,
            "rtsp://u:secret@cam/live",
            &Links::default(),
        );
        let v = serde_json::to_value(&p).unwrap();
        for k in [
            "event_id",
            "label",
            "confidence",
            "explanation",
            "timestamp",
            "start_time",
            "end_time",
            "decided_time",
            "stream_url",
            "player_url",
            "alert_id",
            "occurrence_id",
            "stream_id",
            "phase",
            "event_label",
            "model",
            "rtstream_id",
            "data",
            "camera_url",
            "snapshot_url",
            "clip_url",
        ] {
            assert!(v.get(k).is_some(), "missing {k}: {v}");
        }
        assert_eq!(v["phase"], "start");
        assert_eq!(v["timestamp"], "2026-11-18T11:06:40.123Z");
        // The camera's address (credentials stripped) is `camera_url`;
        // `stream_url` is the clip's playlist, null when not recorded.
        assert_eq!(v["camera_url"], "rtsp://cam/live");
        assert_eq!(v["stream_url"], serde_json::Value::Null);
        assert_eq!(v["player_url"], serde_json::Value::Null);
        assert_eq!(v["data"]["text"], v["explanation"]);
        assert_eq!(v["confidence"].as_f64().unwrap(), 0.968);
        assert_eq!(v["start_time"].as_f64().unwrap(), 10.5);
        assert_eq!(v["decided_time"].as_f64().unwrap(), 11.0);
    }

    #[test]
    fn redact_keeps_urls_without_credentials() {
        assert_eq!(redact("rtsp://cam:554/a@b"), "rtsp://cam:554/a@b");
        assert_eq!(
            redact("rtsp://admin:pw@10.0.0.2:554/s"),
            "rtsp://10.0.0.2:554/s"
        );
        assert_eq!(redact("test:ball"), "test:ball");
    }

    #[test]
    fn topic_template_is_filled() {
        assert_eq!(
            topic(
                "sightline/{stream}/alerts/{label}",
                &StreamId::new("gate"),
                "person"
            ),
            "sightline/gate/alerts/person"
        );
    }
}
