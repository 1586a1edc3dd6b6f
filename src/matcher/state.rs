//! The per-(stream, event) occurrence state machine.
//!
//! Idle → Active when `k` of the last `window` sampled frames match. Active →
//! Cooldown after `end_after` non-matching frames in a row, or when the
//! occurrence reaches `max_duration`. Cooldown → Idle once `cooldown` seconds
//! of stream time have passed since the end. Time is whatever the caller
//! passes (the frame's stream time), so tests drive it directly.
//!
//! Cooldown holds back messages, not facts: frames keep being judged during
//! it, and an occurrence whose k-of-n window filled during the cooldown is
//! started as soon as the cooldown ends, with `start` at its true first
//! matching frame (one that began and ended inside the cooldown is not
//! reported at all).

use std::collections::VecDeque;

use crate::domain::MatchParams;

/// A change the caller must act on.
#[derive(Debug, Clone, PartialEq)]
pub enum Transition {
    /// An occurrence began. `start` is the first matching frame of the window
    /// that triggered it (possibly before a cooldown that delayed the
    /// message); `last_match` its latest matching frame so far.
    Start {
        start: f64,
        last_match: f64,
        best: f32,
        count: usize,
    },
    /// The occurrence ended; `end` is its last matching frame.
    End {
        start: f64,
        end: f64,
        best: f32,
        count: usize,
    },
}

/// An occurrence in progress (reported, or held back by a cooldown).
#[derive(Debug, Clone, Copy, PartialEq)]
struct Open {
    start: f64,
    last_match: f64,
    misses: usize,
    best: f32,
    count: usize,
}

impl Open {
    fn started(&self) -> Transition {
        Transition::Start {
            start: self.start,
            last_match: self.last_match,
            best: self.best,
            count: self.count,
        }
    }

    fn ended(&self) -> Transition {
        Transition::End {
            start: self.start,
            end: self.last_match,
            best: self.best,
            count: self.count,
        }
    }

    /// Takes one frame; true when the occurrence is over.
    fn step(&mut self, p: &MatchParams, t: f64, matched: bool, best: f32, count: usize) -> bool {
        if matched {
            self.last_match = t;
            self.misses = 0;
            self.best = self.best.max(best);
            self.count = self.count.max(count);
        } else {
            self.misses += 1;
        }
        self.misses >= p.end_after || t - self.start >= p.max_duration
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Phase {
    Idle,
    Active(Open),
    /// Messages are held until `until`; `held` is an occurrence that began
    /// meanwhile.
    Cooldown {
        until: f64,
        held: Option<Open>,
    },
}

/// One (stream, event) pair's state.
#[derive(Debug, Clone)]
pub struct Tracker {
    params: MatchParams,
    /// Recent frames while no occurrence is open: (time, matched, best, count).
    recent: VecDeque<(f64, bool, f32, usize)>,
    phase: Phase,
}

impl Tracker {
    pub fn new(params: MatchParams) -> Self {
        Tracker {
            params,
            recent: VecDeque::with_capacity(params.window),
            phase: Phase::Idle,
        }
    }

    /// Whether an occurrence is open.
    pub fn active(&self) -> bool {
        matches!(self.phase, Phase::Active { .. })
    }

    /// Feeds one sampled frame at stream time `t`.
    pub fn observe(
        &mut self,
        t: f64,
        matched: bool,
        best: f32,
        count: usize,
    ) -> Option<Transition> {
        let p = self.params;
        match &mut self.phase {
            Phase::Idle => {
                let open = self.window(t, matched, best, count)?;
                self.phase = Phase::Active(open);
                Some(open.started())
            }
            Phase::Active(open) => {
                if !open.step(&p, t, matched, best, count) {
                    return None;
                }
                let end = open.ended();
                self.phase = Phase::Cooldown {
                    until: t + p.cooldown,
                    held: None,
                };
                self.recent.clear();
                Some(end)
            }
            Phase::Cooldown { until, held } => {
                let until = *until;
                let mut held = held.take();
                match &mut held {
                    Some(open) => {
                        if open.step(&p, t, matched, best, count) {
                            held = None;
                            self.recent.clear();
                        }
                    }
                    None => held = self.window(t, matched, best, count),
                }
                if t < until {
                    self.phase = Phase::Cooldown { until, held };
                    return None;
                }
                match held {
                    Some(open) => {
                        self.phase = Phase::Active(open);
                        Some(open.started())
                    }
                    None => {
                        self.phase = Phase::Idle;
                        None
                    }
                }
            }
        }
    }

    /// Adds a frame to the idle window; an occurrence once `k` of its
    /// frames match.
    fn window(&mut self, t: f64, matched: bool, best: f32, count: usize) -> Option<Open> {
        let p = self.params;
        self.recent.push_back((t, matched, best, count));
        while self.recent.len() > p.window {
            self.recent.pop_front();
        }
        let hits: Vec<_> = self.recent.iter().filter(|r| r.1).collect();
        if hits.len() < p.k {
            return None;
        }
        let open = Open {
            start: hits[0].0,
            last_match: t,
            misses: 0,
            best: hits.iter().map(|r| r.2).fold(0.0, f32::max),
            count: hits.iter().map(|r| r.3).max().unwrap_or(0),
        };
        self.recent.clear();
        Some(open)
    }

    /// Closes an open occurrence now (the stream went away). One held back
    /// by a cooldown was never reported and is dropped.
    pub fn close(&mut self, t: f64) -> Option<Transition> {
        match self.phase {
            Phase::Active(open) => {
                self.phase = Phase::Cooldown {
                    until: t + self.params.cooldown,
                    held: None,
                };
                self.recent.clear();
                Some(open.ended())
            }
            Phase::Cooldown { until, .. } => {
                self.phase = Phase::Cooldown { until, held: None };
                self.recent.clear();
                None
            }
            Phase::Idle => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn params() -> MatchParams {
        MatchParams {
            k: 2,
            window: 3,
            end_after: 4,
            max_duration: 60.0,
            cooldown: 5.0,
        }
    }

    /// Feeds a pattern at 2 fps and returns the transitions with their frame times.
    fn feed(tr: &mut Tracker, pattern: &[bool], t0: f64) -> Vec<(f64, Transition)> {
        pattern
            .iter()
            .enumerate()
            .filter_map(|(i, &m)| {
                let t = t0 + i as f64 * 0.5;
                tr.observe(t, m, if m { 0.9 } else { 0.0 }, m as usize)
                    .map(|x| (t, x))
            })
            .collect()
    }

    #[test]
    fn starts_on_k_of_n_and_reports_first_match_as_start() {
        let mut tr = Tracker::new(params());
        let got = feed(&mut tr, &[false, true, false, true], 0.0);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].0, 1.5);
        assert_eq!(
            got[0].1,
            Transition::Start {
                start: 0.5,
                last_match: 1.5,
                best: 0.9,
                count: 1
            }
        );
    }

    #[test]
    fn a_single_blip_does_not_start() {
        let mut tr = Tracker::new(params());
        assert!(feed(&mut tr, &[true, false, false, true, false, false], 0.0).is_empty());
    }

    #[test]
    fn ends_after_misses_with_last_match_as_end() {
        let mut tr = Tracker::new(params());
        let got = feed(
            &mut tr,
            &[true, true, true, true, false, false, false, false],
            0.0,
        );
        assert_eq!(got.len(), 2);
        assert_eq!(
            got[1].1,
            Transition::End {
                start: 0.0,
                end: 1.5,
                best: 0.9,
                count: 1
            }
        );
    }

    #[test]
    fn cooldown_suppresses_then_releases() {
        let mut tr = Tracker::new(params());
        let mut pattern = vec![true, true, false, false, false, false];
        pattern.extend(std::iter::repeat_n(true, 30));
        let got = feed(&mut tr, &pattern, 0.0);
        // End at t=2.5, cooldown 5 s: the next occurrence begins at t=3.0
        // (k=2 of 3 by t=3.5) but is reported only when the cooldown ends,
        // at t=7.5, with its true start.
        assert_eq!(got.len(), 3, "{got:?}");
        assert_eq!(got[2].0, 7.5, "{got:?}");
        assert_eq!(
            got[2].1,
            Transition::Start {
                start: 3.0,
                last_match: 7.5,
                best: 0.9,
                count: 1
            }
        );
    }

    #[test]
    fn an_occurrence_over_within_the_cooldown_is_not_reported() {
        let mut tr = Tracker::new(params());
        // Ends at t=2.5; a 1 s blip at t=3.0–3.5 is over (4 misses) by 5.5,
        // before the cooldown ends at 7.5; then nothing matches.
        let mut pattern = vec![true, true, false, false, false, false, true, true];
        pattern.extend([false; 20]);
        let got = feed(&mut tr, &pattern, 0.0);
        assert_eq!(got.len(), 2, "{got:?}");
    }

    #[test]
    fn onsets_in_a_cooldown_keep_their_true_time() {
        // The clip: a person for 8 s every 16 s, 2 fps, 10 s cooldown.
        let mut tr = Tracker::new(MatchParams {
            cooldown: 10.0,
            ..params()
        });
        let pattern: Vec<bool> = (0..128).map(|i| (i / 16) % 2 == 0).collect();
        let starts: Vec<f64> = feed(&mut tr, &pattern, 0.0)
            .into_iter()
            .filter_map(|(_, x)| match x {
                Transition::Start { start, .. } => Some(start),
                _ => None,
            })
            .collect();
        assert_eq!(starts, vec![0.0, 16.0, 32.0, 48.0], "{starts:?}");
    }

    #[test]
    fn max_duration_closes_a_long_occurrence() {
        let mut tr = Tracker::new(MatchParams {
            max_duration: 3.0,
            ..params()
        });
        let got = feed(&mut tr, &[true; 12], 0.0);
        assert!(matches!(got[1].1, Transition::End { .. }), "{got:?}");
        assert!(got[1].0 >= 3.0);
    }

    #[test]
    fn close_ends_an_open_occurrence_once() {
        let mut tr = Tracker::new(params());
        feed(&mut tr, &[true, true], 0.0);
        assert!(tr.active());
        assert!(matches!(tr.close(2.0), Some(Transition::End { .. })));
        assert_eq!(tr.close(2.5), None);
    }

    proptest! {
        /// Starts and ends alternate, every end follows its start, start <= end,
        /// and no start comes within the cooldown of the previous end frame.
        #[test]
        fn transitions_are_well_formed(
            pattern in proptest::collection::vec(any::<bool>(), 0..400),
            k in 1usize..4, extra in 0usize..3, end_after in 1usize..6, cooldown in 0.0f64..5.0,
        ) {
            let p = MatchParams { k, window: k + extra, end_after, max_duration: 30.0, cooldown };
            let mut tr = Tracker::new(p);
            let got = feed(&mut tr, &pattern, 0.0);
            let mut open: Option<f64> = None;
            let mut last_end_frame: Option<f64> = None;
            for (t, x) in got {
                match x {
                    Transition::Start { start, last_match, .. } => {
                        prop_assert!(open.is_none());
                        prop_assert!(start <= last_match && last_match <= t);
                        if let Some(e) = last_end_frame {
                            // The message waits out the cooldown; the fact
                            // it reports may lie inside it.
                            prop_assert!(t >= e + cooldown - 1e-9);
                            prop_assert!(start > e);
                        } else {
                            prop_assert!(t - start <= 0.5 * (p.window as f64 - 1.0) + 1e-9);
                        }
                        open = Some(start);
                    }
                    Transition::End { start, end, .. } => {
                        prop_assert_eq!(open, Some(start));
                        prop_assert!(start <= end && end <= t);
                        open = None;
                        last_end_frame = Some(t);
                    }
                }
            }
        }

        /// A stream that always matches produces an occurrence within k frames.
        #[test]
        fn steady_match_starts_within_k_frames(k in 1usize..5) {
            let mut tr = Tracker::new(MatchParams { k, window: k, ..params() });
            let got = feed(&mut tr, &[true; 10], 0.0);
            prop_assert_eq!(got[0].0, 0.5 * (k as f64 - 1.0));
        }
    }
}
