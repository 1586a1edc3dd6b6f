//! The two shapes of a definition: what the config file and the API accept
//! (`config::Raw*`, validated by `config/`) and what the state database
//! stores (`store::*Def`, versioned by its migrations). They hold the same
//! fields today, but the stored shape changes only with a migration, so the
//! two stay separate types. The conversions both ways come from one field
//! list per pair: a field added to one side and not the other, or not
//! listed here, is a compile error, never a silently dropped value.

use crate::config::{RawAlert, RawEvent, RawLine, RawMotion, RawRegion, RawStream};
use crate::store::{AlertDef, EventDef, LineDef, MotionDef, RegionDef, StreamDef};

/// `From` both ways between `$raw` and `$def`: fields under `same` move
/// as they are, fields under `nested` are options of another mirrored pair.
macro_rules! mirror {
    ($raw:ident <=> $def:ident {
        same: [$($f:ident),* $(,)?]
        $(, nested: [$($n:ident),* $(,)?])? $(,)?
    }) => {
        impl From<$raw> for $def {
            fn from(r: $raw) -> Self {
                $def { $($f: r.$f,)* $($($n: r.$n.map(Into::into),)*)? }
            }
        }

        impl From<$def> for $raw {
            fn from(d: $def) -> Self {
                $raw { $($f: d.$f,)* $($($n: d.$n.map(Into::into),)*)? }
            }
        }
    };
}

mirror!(RawMotion <=> MotionDef {
    same: [enabled, sensitivity, max_unscored_secs, masks, compressed, compressed_sensitivity],
});

mirror!(RawStream <=> StreamDef {
    same: [id, url, fps, keyframes_only, transport, stall_timeout_secs, max_backoff_secs,
           record_url, record, pin],
    nested: [motion],
});

mirror!(RawRegion <=> RegionDef {
    same: [name, points],
});

mirror!(RawLine <=> LineDef {
    same: [points, direction],
});

mirror!(RawEvent <=> EventDef {
    same: [id, prompt, label, classes, model, min_confidence, min_count, min_area, negatives,
           min_lift, baseline_secs, k, window, end_after, max_duration_secs, cooldown_secs, per,
           min_dwell_secs, stationary_secs],
    nested: [region, line],
});

mirror!(RawAlert <=> AlertDef {
    same: [id, event, streams, callback_url, webhook_secrets, mqtt, mqtt_topic, send_end,
           enabled],
});
