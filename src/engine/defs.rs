//! The two shapes of a definition: what the config file and the API accept
//! (`config::Raw*`, validated by `config/`) and what the state database
//! stores (`store::*Def`, versioned by its migrations). They hold the same
//! fields today; converting here lets either change without the other.

use crate::config::{RawAlert, RawEvent, RawLine, RawMotion, RawRegion, RawStream};
use crate::store::{AlertDef, EventDef, LineDef, MotionDef, RegionDef, StreamDef};

impl From<RawStream> for StreamDef {
    fn from(r: RawStream) -> Self {
        StreamDef {
            id: r.id,
            url: r.url,
            fps: r.fps,
            keyframes_only: r.keyframes_only,
            transport: r.transport,
            stall_timeout_secs: r.stall_timeout_secs,
            max_backoff_secs: r.max_backoff_secs,
            record_url: r.record_url,
            record: r.record,
            motion: r.motion.map(|m| MotionDef {
                enabled: m.enabled,
                sensitivity: m.sensitivity,
                max_unscored_secs: m.max_unscored_secs,
                masks: m.masks,
            }),
        }
    }
}

impl From<StreamDef> for RawStream {
    fn from(d: StreamDef) -> Self {
        RawStream {
            id: d.id,
            url: d.url,
            fps: d.fps,
            keyframes_only: d.keyframes_only,
            transport: d.transport,
            stall_timeout_secs: d.stall_timeout_secs,
            max_backoff_secs: d.max_backoff_secs,
            record_url: d.record_url,
            record: d.record,
            motion: d.motion.map(|m| RawMotion {
                enabled: m.enabled,
                sensitivity: m.sensitivity,
                max_unscored_secs: m.max_unscored_secs,
                masks: m.masks,
            }),
        }
    }
}

impl From<RawRegion> for RegionDef {
    fn from(r: RawRegion) -> Self {
        RegionDef {
            name: r.name,
            points: r.points,
        }
    }
}

impl From<RegionDef> for RawRegion {
    fn from(d: RegionDef) -> Self {
        RawRegion {
            name: d.name,
            points: d.points,
        }
    }
}

impl From<RawEvent> for EventDef {
    fn from(r: RawEvent) -> Self {
        EventDef {
            id: r.id,
            prompt: r.prompt,
            label: r.label,
            classes: r.classes,
            model: r.model,
            min_confidence: r.min_confidence,
            min_count: r.min_count,
            min_area: r.min_area,
            region: r.region.map(Into::into),
            negatives: r.negatives,
            min_lift: r.min_lift,
            baseline_secs: r.baseline_secs,
            k: r.k,
            window: r.window,
            end_after: r.end_after,
            max_duration_secs: r.max_duration_secs,
            cooldown_secs: r.cooldown_secs,
            per: r.per,
            min_dwell_secs: r.min_dwell_secs,
            line: r.line.map(|l| LineDef {
                points: l.points,
                direction: l.direction,
            }),
            stationary_secs: r.stationary_secs,
        }
    }
}

impl From<EventDef> for RawEvent {
    fn from(d: EventDef) -> Self {
        RawEvent {
            id: d.id,
            prompt: d.prompt,
            label: d.label,
            classes: d.classes,
            model: d.model,
            min_confidence: d.min_confidence,
            min_count: d.min_count,
            min_area: d.min_area,
            region: d.region.map(Into::into),
            negatives: d.negatives,
            min_lift: d.min_lift,
            baseline_secs: d.baseline_secs,
            k: d.k,
            window: d.window,
            end_after: d.end_after,
            max_duration_secs: d.max_duration_secs,
            cooldown_secs: d.cooldown_secs,
            per: d.per,
            min_dwell_secs: d.min_dwell_secs,
            line: d.line.map(|l| RawLine {
                points: l.points,
                direction: l.direction,
            }),
            stationary_secs: d.stationary_secs,
        }
    }
}

impl From<RawAlert> for AlertDef {
    fn from(r: RawAlert) -> Self {
        AlertDef {
            id: r.id,
            event: r.event,
            streams: r.streams,
            callback_url: r.callback_url,
            webhook_secrets: r.webhook_secrets,
            mqtt: r.mqtt,
            mqtt_topic: r.mqtt_topic,
            send_end: r.send_end,
            enabled: r.enabled,
        }
    }
}

impl From<AlertDef> for RawAlert {
    fn from(d: AlertDef) -> Self {
        RawAlert {
            id: d.id,
            event: d.event,
            streams: d.streams,
            callback_url: d.callback_url,
            webhook_secrets: d.webhook_secrets,
            mqtt: d.mqtt,
            mqtt_topic: d.mqtt_topic,
            send_end: d.send_end,
            enabled: d.enabled,
        }
    }
}
