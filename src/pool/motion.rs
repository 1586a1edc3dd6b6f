//! Motion gating: a frame that shows nothing new since the stream's last
//! scored frame is not sent to the model, and that frame's results stand
//! for it. Real cameras watch still scenes most of the time, so this is
//! where most inference is saved.
//!
//! Each sampled frame (already scaled to the model's input) is reduced to a
//! [`GRID`]×[`GRID`] grey thumbnail of its picture area, by averaging a few
//! pixels per cell: about 0.09 ms a frame here (`cargo bench --bench
//! inference`), against 17–55 ms for the models, with no allocation after
//! the first frame. A cell has changed when its grey level moved more than the
//! sensitivity's threshold from the reference (the last scored frame); the
//! frame has motion when the changed share of the cells outside the masks
//! passes the sensitivity's area threshold. Comparing with the last
//! *scored* frame, not the previous one, means slow change adds up.
//!
//! A frame is scored anyway when `max_unscored_secs` passed since the last
//! scored one, sooner (every [`OCCUPIED_SECS`]) while the last result held
//! detections, since a still object may be about to leave, and whenever the
//! last scored frame's results are not in yet. Each stream's gate has a
//! phase: its first forced refresh comes that share of `max_unscored_secs`
//! early, so cameras started together do not refresh together (a burst of
//! forced frames would queue everyone's frames behind it).

use std::sync::{Arc, Mutex};

use crate::domain::Frame;
pub use crate::domain::MotionSpec;

/// Thumbnail cells per side.
pub const GRID: usize = 64;
/// Longest gap between scored frames while the last result held detections.
pub const OCCUPIED_SECS: f64 = 1.0;

/// Grey levels a cell must move to count as changed.
fn level(spec: &MotionSpec) -> i32 {
    (8.0 + (1.0 - spec.sensitivity.clamp(0.0, 1.0)) * 32.0) as i32
}

/// Share of the unmasked cells that must change.
fn area(spec: &MotionSpec) -> f32 {
    0.001 + (1.0 - spec.sensitivity.clamp(0.0, 1.0)) * 0.008
}

/// What to do with a frame.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision<T> {
    /// Run the models; report the results with [`Gate::scored`] and this
    /// ticket.
    Score(u64),
    /// Nothing changed: these results of the last scored frame stand.
    Repeat(T),
}

/// One stream branch's gate. `T` is what a scored frame produced.
pub struct Gate<T> {
    spec: MotionSpec,
    state: Mutex<State<T>>,
}

struct State<T> {
    reference: Vec<u8>,
    scratch: Vec<u8>,
    /// Cells outside every mask.
    unmasked: Vec<bool>,
    /// The frame layout the reference was taken with.
    layout: Option<[u32; 6]>,
    last_scored: f64,
    /// The ticket of the reference frame, and its results once in.
    ticket: u64,
    results: Option<T>,
    occupied: bool,
    /// In [0, 1): how much earlier than `max_unscored_secs` the first
    /// forced refresh comes.
    phase: f64,
    /// The stream time of the last frame compared with a reference, and
    /// whether its picture had moved (what the compressed-domain gate
    /// learns the still scene from).
    last_look: Option<(f64, bool)>,
}

impl<T: Clone> Gate<T> {
    /// A gate for a stream with these settings; `None` when gating is off.
    pub fn new(spec: &MotionSpec) -> Option<Arc<Gate<T>>> {
        Self::with_phase(spec, 0.0)
    }

    /// A gate whose first forced refresh comes `phase` (in [0, 1)) of
    /// `max_unscored_secs` early.
    pub fn with_phase(spec: &MotionSpec, phase: f64) -> Option<Arc<Gate<T>>> {
        spec.enabled.then(|| {
            Arc::new(Gate {
                spec: spec.clone(),
                state: Mutex::new(State {
                    reference: Vec::new(),
                    scratch: vec![0; GRID * GRID],
                    unmasked: unmasked_cells(&spec.masks),
                    layout: None,
                    last_scored: f64::NEG_INFINITY,
                    ticket: 0,
                    results: None,
                    occupied: false,
                    phase: phase.clamp(0.0, 0.999),
                    last_look: None,
                }),
            })
        })
    }

    /// Decides for `frame`: score it, or repeat the last results.
    pub fn decide(&self, frame: &Frame) -> Decision<T> {
        let Ok(mut st) = self.state.lock() else {
            return Decision::Score(0);
        };
        let st = &mut *st;
        thumbnail(frame, &mut st.scratch);
        let layout = layout(frame);
        if st.layout != Some(layout) {
            st.layout = Some(layout);
            st.reference.clear(); // a new layout: nothing to compare with
        }
        let since = frame.stream_secs - st.last_scored;
        let due = if st.occupied {
            OCCUPIED_SECS.min(self.spec.max_unscored_secs)
        } else {
            self.spec.max_unscored_secs
        };
        let compared = st.reference.len() == st.scratch.len();
        let changed = compared && moved(&st.reference, &st.scratch, &st.unmasked, &self.spec);
        if compared {
            st.last_look = Some((frame.stream_secs, changed));
        }
        let still = since < due && compared && !changed;
        match (still, &st.results) {
            (true, Some(r)) => Decision::Repeat(r.clone()),
            _ => {
                std::mem::swap(&mut st.reference, &mut st.scratch);
                if st.scratch.len() != GRID * GRID {
                    st.scratch = vec![0; GRID * GRID];
                }
                st.last_scored = if st.last_scored == f64::NEG_INFINITY {
                    frame.stream_secs - st.phase * self.spec.max_unscored_secs
                } else {
                    frame.stream_secs
                };
                st.ticket += 1;
                st.results = None;
                Decision::Score(st.ticket)
            }
        }
    }

    /// Whether the last scored frame's results held detections.
    pub fn occupied(&self) -> bool {
        self.state.lock().is_ok_and(|st| st.occupied)
    }

    /// The stream time of the last frame compared with the reference, and
    /// whether its picture had moved.
    pub fn last_look(&self) -> Option<(f64, bool)> {
        self.state.lock().ok().and_then(|st| st.last_look)
    }

    /// The results of the frame that got `ticket`; `occupied` when they
    /// held detections. Late results of an older frame are ignored.
    pub fn scored(&self, ticket: u64, results: T, occupied: bool) {
        if let Ok(mut st) = self.state.lock() {
            if st.ticket == ticket {
                st.results = Some(results);
                st.occupied = occupied;
            }
        }
    }
}

/// What a thumbnail depends on: the frame size and its picture area.
fn layout(f: &Frame) -> [u32; 6] {
    let c = f.content.map(|v| (v * 10_000.0) as u32);
    [f.width, f.height, c[0], c[1], c[2], c[3]]
}

/// Fills `out` (GRID×GRID) with the mean grey of 4×4 pixels sampled in each
/// cell of the frame's picture area.
fn thumbnail(f: &Frame, out: &mut [u8]) {
    const S: usize = 4;
    let (w, h) = (f.width as usize, f.height as usize);
    if w == 0 || h == 0 || f.rgb.len() < w * h * 3 {
        out.fill(0);
        return;
    }
    // Where the samples fall, once per axis: GRID × S columns and rows.
    let axis = |lo: f32, hi: f32, n: usize| -> [usize; GRID * S] {
        let start = lo.clamp(0.0, 1.0) * n as f32;
        let span = ((hi - lo).clamp(0.0, 1.0) * n as f32).max(1.0);
        std::array::from_fn(|i| {
            let at = start + (i as f32 + 0.5) * span / (GRID * S) as f32;
            (at as usize).min(n - 1)
        })
    };
    let xs = axis(f.content[0], f.content[2], w);
    let ys = axis(f.content[1], f.content[3], h);
    for (gy, rows) in ys.chunks_exact(S).enumerate() {
        for (gx, cols) in xs.chunks_exact(S).enumerate() {
            let mut sum = 0u32;
            for &y in rows {
                let row = &f.rgb[y * w * 3..(y + 1) * w * 3];
                for &x in cols {
                    let p = &row[x * 3..x * 3 + 3];
                    // Integer luma (BT.601 weights, sum 256).
                    sum += (77 * p[0] as u32 + 150 * p[1] as u32 + 29 * p[2] as u32) >> 8;
                }
            }
            out[gy * GRID + gx] = (sum / (S * S) as u32) as u8;
        }
    }
}

/// Whether enough unmasked cells changed.
fn moved(a: &[u8], b: &[u8], unmasked: &[bool], spec: &MotionSpec) -> bool {
    let level = level(spec);
    let (mut changed, mut counted) = (0usize, 0usize);
    for ((&x, &y), &keep) in a.iter().zip(b).zip(unmasked) {
        if keep {
            counted += 1;
            changed += usize::from((x as i32 - y as i32).abs() > level);
        }
    }
    counted > 0 && changed as f32 > area(spec) * counted as f32
}

/// Which cells lie outside every mask: a cell is masked when its centre is
/// inside a mask polygon. Cells span the picture area only, so their
/// centres are already in picture coordinates.
fn unmasked_cells(masks: &[Vec<(f32, f32)>]) -> Vec<bool> {
    let mut out = vec![true; GRID * GRID];
    for (i, cell) in out.iter_mut().enumerate() {
        let p = (
            ((i % GRID) as f32 + 0.5) / GRID as f32,
            ((i / GRID) as f32 + 0.5) / GRID as f32,
        );
        *cell = !masks.iter().any(|m| inside(p, m));
    }
    out
}

/// Even-odd point-in-polygon test.
pub fn inside((x, y): (f32, f32), poly: &[(f32, f32)]) -> bool {
    let mut hit = false;
    let mut j = poly.len().wrapping_sub(1);
    for (i, &(xi, yi)) in poly.iter().enumerate() {
        let (xj, yj) = poly[j];
        if (yi > y) != (yj > y) && x < (xj - xi) * (y - yi) / (yj - yi) + xi {
            hit = !hit;
        }
        j = i;
    }
    hit
}

#[cfg(test)]
mod tests;
