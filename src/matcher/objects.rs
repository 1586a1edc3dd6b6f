//! Rules over tracked objects, per (stream, event): how long each object
//! has been in the event's region (dwell), whether it has stopped moving
//! (stationary), and when it crosses the event's line. Pure: the caller
//! passes the stream's live tracks and the frame's stream time.
//!
//! An object whose track misses a frame keeps what it had (a person hidden
//! behind a post for a moment neither leaves the region nor restarts their
//! dwell), so counts over objects do not flicker the way per-frame box
//! counts do.

use std::collections::BTreeMap;

use super::track::{iou, Track};
use crate::domain::{Direction, Line, ObjectRules};

/// A box that keeps at least this IoU with the box it had when it stopped
/// has not moved (detector boxes jitter by a few pixels on a still object).
pub const STILL_IOU: f32 = 0.8;

/// What is known about one object for one event.
#[derive(Debug, Clone)]
struct Known {
    /// In the region (and of the event's kind) since then.
    inside_since: Option<f64>,
    /// The box it had when it last moved, and when that was.
    anchor: [f32; 4],
    still_since: f64,
    /// Stood still for `stationary_secs`: holds nothing until it moves.
    parked: bool,
    /// Where its feet were (bottom centre of the box) when last seen.
    foot: (f32, f32),
}

/// A crossing of the event's line.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Crossing {
    pub track_id: u64,
    /// `In` or `Out`, as it crossed.
    pub direction: Direction,
    /// Crossings counted by this event on this stream so far, this one
    /// included.
    pub count: u64,
}

/// What one frame showed for the event.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Facts {
    /// Objects that satisfy the rule in this frame (in the region long
    /// enough, not parked), by track id, with the time each began to
    /// qualify without a break (its dwell started).
    pub holding: Vec<u64>,
    pub since: Vec<f64>,
    /// Line crossings in this frame, in the rule's direction.
    pub crossings: Vec<Crossing>,
}

/// One event's knowledge of one stream's objects.
#[derive(Debug, Default, Clone)]
pub struct ObjectFacts {
    known: BTreeMap<u64, Known>,
    crossings: u64,
}

fn foot(b: &[f32; 4]) -> (f32, f32) {
    ((b[0] + b[2]) / 2.0, b[3])
}

/// Which side of the line `p` is on, in picture coordinates (y down):
/// positive on the right-hand side of someone walking along the line from
/// `a` to `b` as drawn on the picture, negative on their left.
fn side(line: &Line, p: (f32, f32)) -> f32 {
    let ((ax, ay), (bx, by)) = (line.a, line.b);
    (bx - ax) * (p.1 - ay) - (by - ay) * (p.0 - ax)
}

/// The direction of a move from `from` to `to` across the segment, if it
/// crosses it: `In` from the left-hand side of a→b to its right-hand side
/// (for a line drawn left to right across the picture: from the top
/// towards the bottom), `Out` the other way.
pub fn crossing(line: &Line, from: (f32, f32), to: (f32, f32)) -> Option<Direction> {
    let (s0, s1) = (side(line, from), side(line, to));
    if s0 == 0.0 || s0.signum() == s1.signum() {
        return None;
    }
    // The move's own line must separate the segment's ends too.
    let mover = Line {
        a: from,
        b: to,
        direction: Direction::Any,
    };
    if side(&mover, line.a).signum() == side(&mover, line.b).signum() {
        return None;
    }
    Some(if s0 < 0.0 {
        Direction::In
    } else {
        Direction::Out
    })
}

impl ObjectFacts {
    /// Takes one frame: `tracks` are the stream's live tracks (those with
    /// `misses == 0` were seen in it), `qualifies` says whether a track's
    /// object is of the event's kind and inside its region (a crossing
    /// counts when the object qualifies where it lands).
    pub fn observe(
        &mut self,
        rules: &ObjectRules,
        t: f64,
        tracks: &[Track],
        qualifies: impl Fn(&Track) -> bool,
    ) -> Facts {
        self.known
            .retain(|id, _| tracks.iter().any(|tr| tr.id == *id));
        let mut facts = Facts::default();
        for tr in tracks {
            let q = qualifies(tr);
            let known = self.known.entry(tr.id).or_insert_with(|| Known {
                inside_since: None,
                anchor: tr.bbox,
                still_since: tr.first_seen,
                parked: false,
                foot: foot(&tr.bbox),
            });
            if tr.misses == 0 {
                if iou(&tr.bbox, &known.anchor) < STILL_IOU {
                    known.anchor = tr.bbox;
                    known.still_since = t;
                    known.parked = false;
                } else if rules.stationary.is_some_and(|s| t - known.still_since >= s) {
                    known.parked = true;
                }
                known.inside_since = if q {
                    known.inside_since.or(Some(t))
                } else {
                    None
                };
                let now = foot(&tr.bbox);
                let crossed = rules
                    .line
                    .as_ref()
                    .and_then(|l| Some(l).zip(crossing(l, known.foot, now)));
                if let (Some((line, dir)), true) = (crossed, q) {
                    if line.direction == Direction::Any || line.direction == dir {
                        self.crossings += 1;
                        facts.crossings.push(Crossing {
                            track_id: tr.id,
                            direction: dir,
                            count: self.crossings,
                        });
                    }
                }
                known.foot = now;
            }
            let dwelt = known
                .inside_since
                .is_some_and(|since| t - since >= rules.min_dwell);
            if let (true, false, Some(since)) = (dwelt, known.parked, known.inside_since) {
                facts.holding.push(tr.id);
                facts.since.push(since);
            }
        }
        facts
    }

    /// Forgets every object (the stream stopped); the crossing count stays.
    pub fn clear(&mut self) {
        self.known.clear();
    }
}

#[cfg(test)]
mod tests;
