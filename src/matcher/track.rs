//! Multi-object tracks across sampled frames, for one (stream, detector
//! model). Boxes are tied to tracks by overlap (IoU) with where each track is
//! expected to be, from a constant-velocity guess. Association runs in two
//! stages, after ByteTrack (Zhang et al., 2022): confident boxes first, then
//! the low-score leftovers may only keep existing tracks alive, since a person
//! half hidden behind a post scores low but is still the same person. Only a
//! confident box opens a track. A track survives `max_misses` sampled frames
//! without a box, so a short occlusion keeps its id.
//!
//! At a few sampled frames a second, a walker's boxes in consecutive frames
//! may not overlap at all, and a new track has no speed to guess with. So a
//! confident box left over after both stages may still continue a track of
//! its label whose box centre is near enough: within `max_speed` box sizes
//! per second since the track was last seen (a person walks about half their
//! height in half a second), with a similar size.
//!
//! Pure: the caller passes each frame's stream time; ids grow from 1 and are
//! never reused for the life of the [`Tracks`].
//!
//! Matching within a stage is greedy by IoU, highest first, not an optimal
//! assignment: with tens of boxes per frame, and boxes of one object that
//! rarely overlap two tracks closely, the two give the same answer almost
//! always and greedy costs a fraction.

use std::sync::Arc;

pub use crate::domain::iou;
use crate::domain::Detection;

/// How boxes become tracks.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TrackParams {
    /// A box at least this confident may open a track (first stage).
    pub high: f32,
    /// Boxes from here up to `high` only continue tracks (second stage).
    pub low: f32,
    /// Least IoU between a box and a track's predicted box to tie them.
    pub min_iou: f32,
    /// Sampled frames a track may go without a box before it is dropped.
    pub max_misses: u32,
    /// For boxes that overlap no track: how far (in the track box's larger
    /// side, per second since it was seen) a box centre may be to continue it.
    pub max_speed: f32,
}

impl Default for TrackParams {
    fn default() -> Self {
        TrackParams {
            high: 0.5,
            low: 0.1,
            min_iou: 0.3,
            max_misses: 4,
            max_speed: 2.0,
        }
    }
}

/// One tracked object.
#[derive(Debug, Clone, PartialEq)]
pub struct Track {
    /// Unique for the life of the stream's [`Tracks`].
    pub id: u64,
    pub label: Arc<str>,
    /// Its latest box (normalised x0, y0, x1, y1).
    pub bbox: [f32; 4],
    /// Change of each box coordinate per second (smoothed).
    velocity: [f32; 4],
    /// Its best score so far.
    pub best: f32,
    /// Stream seconds it was first and last given a box.
    pub first_seen: f64,
    pub last_seen: f64,
    /// Sampled frames in a row without a box (0 when seen this frame).
    pub misses: u32,
    /// Frames it was given a box in.
    pub hits: u32,
}

impl Track {
    /// Where the box should be at stream time `t`.
    pub fn predicted(&self, t: f64) -> [f32; 4] {
        let dt = (t - self.last_seen).max(0.0) as f32;
        let mut b = self.bbox;
        for (c, v) in b.iter_mut().zip(self.velocity) {
            *c += v * dt;
        }
        b
    }

    fn see(&mut self, t: f64, d: &Detection) {
        let dt = (t - self.last_seen) as f32;
        if dt > 0.0 {
            for i in 0..4 {
                let v = (d.bbox[i] - self.bbox[i]) / dt;
                // Half the new, half the old: one jittery box does not
                // throw the guess far off.
                self.velocity[i] = 0.5 * self.velocity[i] + 0.5 * v;
            }
        }
        self.bbox = d.bbox;
        self.best = self.best.max(d.score);
        self.last_seen = t;
        self.misses = 0;
        self.hits += 1;
    }
}

/// An object's part in an occurrence, as alerts report it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct TrackedObject {
    pub track_id: u64,
    pub label: Arc<str>,
    /// Its best score so far.
    pub best_score: f32,
    /// Stream seconds the tracker first and last saw it.
    pub first_seen: f64,
    pub last_seen: f64,
    /// Its box (normalised x0, y0, x1, y1): in the frame that started the
    /// occurrence on a start message, where it was last seen on an end.
    pub bbox: [f32; 4],
}

impl TrackedObject {
    fn of(track: &Track) -> Self {
        TrackedObject {
            track_id: track.id,
            label: Arc::clone(&track.label),
            best_score: track.best,
            first_seen: track.first_seen,
            last_seen: track.last_seen,
            bbox: track.bbox,
        }
    }
}

/// One round of association: IoU with the predicted box, or (for what is
/// left) distance to it.
#[derive(Clone, Copy)]
enum Stage<'a> {
    Overlap(&'a [usize]),
    Near(&'a [usize]),
}

/// The tracks of one (stream, detector model).
#[derive(Debug, Clone)]
pub struct Tracks {
    params: TrackParams,
    live: Vec<Track>,
    next_id: u64,
}

impl Tracks {
    pub fn new(params: TrackParams) -> Self {
        Tracks {
            params,
            live: Vec::new(),
            next_id: 1,
        }
    }

    /// The tracks alive after the last frame (some may have missed it).
    pub fn live(&self) -> &[Track] {
        &self.live
    }

    /// Forgets every track (the stream stopped); ids keep counting.
    pub fn clear(&mut self) {
        self.live.clear();
    }

    /// The objects behind the given boxes of the last frame, from the ids
    /// [`Tracks::update`] returned for it.
    pub fn objects(&self, owners: impl IntoIterator<Item = Option<u64>>) -> Vec<TrackedObject> {
        owners
            .into_iter()
            .flatten()
            .filter_map(|id| self.live.iter().find(|t| t.id == id))
            .map(TrackedObject::of)
            .collect()
    }

    /// Takes one sampled frame's boxes at stream time `t`; returns, for each
    /// box, the id of the track it now belongs to (`None` for a low-score box
    /// that continued nothing).
    pub fn update(&mut self, t: f64, dets: &[Detection]) -> Vec<Option<u64>> {
        let p = self.params;
        let mut owner: Vec<Option<u64>> = vec![None; dets.len()];
        let mut taken = vec![false; self.live.len()];
        let predicted: Vec<[f32; 4]> = self.live.iter().map(|tr| tr.predicted(t)).collect();
        let high: Vec<usize> = (0..dets.len())
            .filter(|&i| dets[i].score >= p.high)
            .collect();
        let low: Vec<usize> = (0..dets.len())
            .filter(|&i| dets[i].score >= p.low && dets[i].score < p.high)
            .collect();
        for stage in [
            Stage::Overlap(&high),
            Stage::Overlap(&low),
            Stage::Near(&high),
        ] {
            for (ti, di) in self.pairs(stage, t, &predicted, (&taken, &owner), dets) {
                taken[ti] = true;
                self.live[ti].see(t, &dets[di]);
                owner[di] = Some(self.live[ti].id);
            }
        }
        for (ti, tr) in self.live.iter_mut().enumerate() {
            if !taken[ti] {
                tr.misses += 1;
            }
        }
        self.live.retain(|tr| tr.misses <= p.max_misses);
        for &di in &high {
            if owner[di].is_none() {
                owner[di] = Some(self.open(t, &dets[di]));
            }
        }
        owner
    }

    /// Greedy pairs (track index, box index) of one stage among free tracks
    /// and free boxes of the same label, best fit first.
    fn pairs(
        &self,
        stage: Stage<'_>,
        t: f64,
        predicted: &[[f32; 4]],
        (taken, owner): (&[bool], &[Option<u64>]),
        dets: &[Detection],
    ) -> Vec<(usize, usize)> {
        let boxes = match stage {
            Stage::Overlap(b) | Stage::Near(b) => b,
        };
        let mut candidates: Vec<(f32, usize, usize)> = Vec::new();
        for (ti, tr) in self.live.iter().enumerate() {
            if taken[ti] {
                continue;
            }
            for &di in boxes.iter().filter(|&&di| owner[di].is_none()) {
                if dets[di].label != tr.label {
                    continue;
                }
                let fit = match stage {
                    Stage::Overlap(_) => Some(iou(&predicted[ti], &dets[di].bbox))
                        .filter(|o| *o >= self.params.min_iou),
                    Stage::Near(_) => self.nearness(tr, t, &predicted[ti], &dets[di].bbox),
                };
                if let Some(fit) = fit {
                    candidates.push((fit, ti, di));
                }
            }
        }
        candidates.sort_by(|a, b| b.0.total_cmp(&a.0));
        let (mut track_used, mut box_used) =
            (vec![false; self.live.len()], vec![false; dets.len()]);
        let mut out = Vec::new();
        for (_, ti, di) in candidates {
            if !track_used[ti] && !box_used[di] {
                track_used[ti] = true;
                box_used[di] = true;
                out.push((ti, di));
            }
        }
        out
    }

    /// For the last stage: higher the nearer `b`'s centre is to the
    /// predicted box's, `None` beyond the reach of the track's speed limit
    /// or for a box less than half or more than twice its size.
    fn nearness(&self, tr: &Track, t: f64, pred: &[f32; 4], b: &[f32; 4]) -> Option<f32> {
        let side = |r: &[f32; 4]| (r[2] - r[0]).max(r[3] - r[1]);
        let (s, sb) = (side(&tr.bbox), side(b));
        if s <= 0.0 || sb < 0.5 * s || sb > 2.0 * s {
            return None;
        }
        let centre = |r: &[f32; 4]| ((r[0] + r[2]) / 2.0, (r[1] + r[3]) / 2.0);
        let ((px, py), (bx, by)) = (centre(pred), centre(b));
        let jump = ((px - bx).powi(2) + (py - by).powi(2)).sqrt() / s;
        let reach = self.params.max_speed * (t - tr.last_seen).max(0.0) as f32;
        (jump <= reach).then_some(-jump)
    }

    fn open(&mut self, t: f64, d: &Detection) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        self.live.push(Track {
            id,
            label: Arc::clone(&d.label),
            bbox: d.bbox,
            velocity: [0.0; 4],
            best: d.score,
            first_seen: t,
            last_seen: t,
            misses: 0,
            hits: 1,
        });
        id
    }
}

#[cfg(test)]
mod tests;
