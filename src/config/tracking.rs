//! An event's rules over tracked objects (`per`, `min_dwell_secs`, `line`,
//! `stationary_secs`), checked like the rest of the config: every problem
//! reported with its field path.

use super::raw::{RawEvent, RawLine};
use super::validate::Checker;
use crate::domain::{Direction, Line, ObjectRules};

/// The event's object rules; `None` when it sets none of them (each frame
/// is then judged on its own, as before tracking).
pub(super) fn object_rules(c: &mut Checker, p: &str, e: &RawEvent) -> Option<ObjectRules> {
    if e.per.is_none()
        && e.min_dwell_secs.is_none()
        && e.line.is_none()
        && e.stationary_secs.is_none()
    {
        return None;
    }
    let per_object = match e.per.as_deref() {
        None | Some("event") => false,
        Some("object") => true,
        Some(other) => {
            c.bad(
                format!("{p}.per"),
                format!("must be \"event\" or \"object\", got {other:?}"),
            );
            false
        }
    };
    let rules = ObjectRules {
        per_object,
        min_dwell: c.float(
            &format!("{p}.min_dwell_secs"),
            e.min_dwell_secs,
            0.0,
            0.0,
            86_400.0,
        ),
        line: e.line.as_ref().map(|l| line(c, &format!("{p}.line"), l)),
        stationary: e.stationary_secs.map(|s| {
            c.float(
                &format!("{p}.stationary_secs"),
                Some(s),
                60.0,
                1.0,
                86_400.0,
            )
        }),
    };
    if rules.line.is_some()
        && (per_object || e.min_dwell_secs.is_some() || rules.stationary.is_some())
    {
        c.bad(
            format!("{p}.line"),
            "a line event gives one occurrence per crossing; per, min_dwell_secs and \
             stationary_secs do not apply to it (use a second event)",
        );
    }
    Some(rules)
}

fn line(c: &mut Checker, p: &str, l: &RawLine) -> Line {
    let points = l.points.clone().unwrap_or_default();
    if points.len() != 2 {
        c.bad(
            format!("{p}.points"),
            format!("a line needs exactly 2 points, got {}", points.len()),
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
    let at = |i: usize| {
        points
            .get(i)
            .map_or((0.0, 0.0), |[x, y]| (*x as f32, *y as f32))
    };
    let (a, b) = (at(0), at(1));
    if points.len() == 2 && a == b {
        c.bad(format!("{p}.points"), "the two points must differ");
    }
    let direction = match l.direction.as_deref() {
        None | Some("any") => Direction::Any,
        Some("in") => Direction::In,
        Some("out") => Direction::Out,
        Some(other) => {
            c.bad(
                format!("{p}.direction"),
                format!("must be \"in\", \"out\" or \"any\", got {other:?}"),
            );
            Direction::Any
        }
    };
    Line { a, b, direction }
}
