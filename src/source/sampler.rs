//! Which decoded frames go to the model. Pure: it sees only stream times and
//! keyframe flags, so it is tested without a pipeline.
//!
//! Frames are admitted on a fixed grid of `1/fps` seconds anchored at the first
//! admitted frame, so a 25 fps camera sampled at 2 fps yields frames 0.5 s
//! apart without drift. A frame that comes late (after a gap) re-anchors the
//! grid instead of letting several frames through to "catch up".

/// Decides, frame by frame, what is scored.
#[derive(Debug, Clone)]
pub struct Sampler {
    interval: f64,
    keyframes_only: bool,
    next_due: Option<f64>,
}

/// Slack for timestamp rounding: a frame 1 ms early is still on time.
const EPSILON: f64 = 1e-3;

impl Sampler {
    /// A sampler for `fps` frames per second (must be > 0).
    pub fn new(fps: f64, keyframes_only: bool) -> Self {
        Sampler {
            interval: 1.0 / fps.max(1e-6),
            keyframes_only,
            next_due: None,
        }
    }

    /// Takes a new rate and keyframe mode from the next frame on; the grid
    /// re-anchors at the next admitted frame.
    pub fn retune(&mut self, fps: f64, keyframes_only: bool) {
        self.interval = 1.0 / fps.max(1e-6);
        self.keyframes_only = keyframes_only;
        self.next_due = None;
    }

    /// Whether only keyframes are sampled.
    pub fn keyframes_only(&self) -> bool {
        self.keyframes_only
    }

    /// Whether [`Sampler::admit`] would take the keyframe at `t`, without
    /// taking it: what is refused need not be decoded.
    pub fn would_admit(&self, t: f64) -> bool {
        !self.early(t)
    }

    /// Whether `t` comes before the next frame is due (and is not the
    /// start of a new segment).
    fn early(&self, t: f64) -> bool {
        self.next_due
            .is_some_and(|due| t + self.interval >= due - self.interval && t + EPSILON < due)
    }

    /// Whether the frame at `t` seconds (stream time) should be scored.
    pub fn admit(&mut self, t: f64, keyframe: bool) -> bool {
        if self.keyframes_only && !keyframe {
            return false;
        }
        if self.early(t) {
            return false;
        }
        match self.next_due {
            // Time went backwards by more than a step: a new segment; start over.
            Some(due) if t + self.interval < due - self.interval => {
                self.next_due = Some(t + self.interval);
                true
            }
            Some(due) => {
                let next = due + self.interval;
                // After a gap, anchor at this frame rather than bursting.
                self.next_due = Some(if t + EPSILON >= next {
                    t + self.interval
                } else {
                    next
                });
                true
            }
            None => {
                self.next_due = Some(t + self.interval);
                true
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn run(fps: f64, src_fps: f64, secs: f64) -> Vec<f64> {
        let mut s = Sampler::new(fps, false);
        let n = (secs * src_fps) as usize;
        (0..n)
            .map(|i| i as f64 / src_fps)
            .filter(|&t| s.admit(t, false))
            .collect()
    }

    #[test]
    fn two_fps_from_25_fps_is_evenly_spaced() {
        let got = run(2.0, 25.0, 10.0);
        assert_eq!(got.len(), 20);
        for w in got.windows(2) {
            assert!((w[1] - w[0] - 0.5).abs() < 0.05, "{w:?}");
        }
    }

    #[test]
    fn two_fps_from_10_fps_hits_every_fifth_frame() {
        let got = run(2.0, 10.0, 3.0);
        assert_eq!(got, vec![0.0, 0.5, 1.0, 1.5, 2.0, 2.5]);
    }

    #[test]
    fn keyframe_mode_refuses_delta_frames() {
        let mut s = Sampler::new(2.0, true);
        assert!(!s.admit(0.0, false));
        assert!(s.admit(0.1, true));
        assert!(!s.admit(0.2, true), "still limited by fps");
        assert!(s.admit(0.7, true));
    }

    #[test]
    fn a_gap_reanchors_without_a_burst() {
        let mut s = Sampler::new(2.0, false);
        assert!(s.admit(0.0, false));
        assert!(s.admit(5.0, false));
        assert!(!s.admit(5.1, false));
        assert!(!s.admit(5.4, false));
        assert!(s.admit(5.5, false));
    }

    #[test]
    fn time_going_back_restarts() {
        let mut s = Sampler::new(1.0, false);
        assert!(s.admit(100.0, false));
        assert!(s.admit(0.0, false));
        assert!(!s.admit(0.5, false));
        assert!(s.admit(1.0, false));
    }

    proptest! {
        /// Admitted frames sit on the 1/fps grid to within one source frame,
        /// so no burst ever exceeds the rate, and a steady source yields close
        /// to fps frames per second.
        #[test]
        fn rate_is_capped_and_met(fps in 0.2f64..10.0, src_fps in 10.0f64..60.0) {
            let got = run(fps, src_fps, 20.0);
            for i in 0..got.len() {
                for j in i + 1..got.len() {
                    let min_gap = (j - i) as f64 / fps - 1.0 / src_fps - 2.0 * EPSILON;
                    prop_assert!(got[j] - got[i] >= min_gap, "{} {} {}", i, j, min_gap);
                }
            }
            let expected = 20.0 * fps.min(src_fps);
            // Each admitted gap is at most one interval plus one source frame.
            let worst = 20.0 / (1.0 / fps + 1.0 / src_fps);
            prop_assert!(got.len() as f64 <= expected + 1.0);
            prop_assert!(got.len() as f64 >= worst - 1.0);
        }
    }
}
