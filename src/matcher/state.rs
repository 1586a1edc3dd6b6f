//! The per-(stream, event) occurrence state machine.
//!
//! Idle → Active when `k` of the last `window` sampled frames match. Active →
//! Cooldown after `end_after` non-matching frames in a row, or when the
//! occurrence reaches `max_duration`. Cooldown → Idle once `cooldown` seconds
//! of stream time have passed since the end. Time is whatever the caller
//! passes (the frame's stream time), so tests drive it directly.

use std::collections::VecDeque;

use crate::domain::MatchParams;

/// A change the caller must act on.
#[derive(Debug, Clone, PartialEq)]
pub enum Transition {
    /// An occurrence began. `start` is the first matching frame of the window
    /// that triggered it; `last_match` the triggering frame.
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

#[derive(Debug, Clone, PartialEq)]
enum Phase {
    Idle,
    Active {
        start: f64,
        last_match: f64,
        misses: usize,
        best: f32,
        count: usize,
    },
    Cooldown {
        until: f64,
    },
}

/// One (stream, event) pair's state.
#[derive(Debug, Clone)]
pub struct Tracker {
    params: MatchParams,
    /// Recent frames while idle: (time, matched, best, count).
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
            Phase::Cooldown { until } => {
                if t < *until {
                    return None;
                }
                self.phase = Phase::Idle;
                self.recent.clear();
                self.observe(t, matched, best, count)
            }
            Phase::Idle => {
                self.recent.push_back((t, matched, best, count));
                while self.recent.len() > p.window {
                    self.recent.pop_front();
                }
                let hits: Vec<_> = self.recent.iter().filter(|r| r.1).collect();
                if hits.len() < p.k {
                    return None;
                }
                let start = hits[0].0;
                let best = hits.iter().map(|r| r.2).fold(0.0, f32::max);
                let count = hits.iter().map(|r| r.3).max().unwrap_or(0);
                self.recent.clear();
                self.phase = Phase::Active {
                    start,
                    last_match: t,
                    misses: 0,
                    best,
                    count,
                };
                Some(Transition::Start {
                    start,
                    last_match: t,
                    best,
                    count,
                })
            }
            Phase::Active {
                start,
                last_match,
                misses,
                best: b,
                count: c,
            } => {
                if matched {
                    *last_match = t;
                    *misses = 0;
                    *b = b.max(best);
                    *c = (*c).max(count);
                } else {
                    *misses += 1;
                }
                let too_long = t - *start >= p.max_duration;
                if *misses >= p.end_after || too_long {
                    let end = Transition::End {
                        start: *start,
                        end: *last_match,
                        best: *b,
                        count: *c,
                    };
                    self.phase = Phase::Cooldown {
                        until: t + p.cooldown,
                    };
                    return Some(end);
                }
                None
            }
        }
    }

    /// Closes an open occurrence now (the stream went away).
    pub fn close(&mut self, t: f64) -> Option<Transition> {
        if let Phase::Active {
            start,
            last_match,
            best,
            count,
            ..
        } = self.phase
        {
            self.phase = Phase::Cooldown {
                until: t + self.params.cooldown,
            };
            return Some(Transition::End {
                start,
                end: last_match,
                best,
                count,
            });
        }
        None
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
        // End at t=2.5, cooldown 5 s: idle again at t>=7.5, start needs 2 frames.
        assert_eq!(got.len(), 3, "{got:?}");
        assert!(matches!(got[2].1, Transition::Start { .. }));
        assert!(got[2].0 >= 7.5 + 0.5 - 1e-9, "{got:?}");
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
                        prop_assert!(start <= last_match && last_match == t);
                        prop_assert!(t - start <= 0.5 * (p.window as f64 - 1.0) + 1e-9);
                        if let Some(e) = last_end_frame {
                            prop_assert!(start >= e + cooldown - 1e-9);
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
