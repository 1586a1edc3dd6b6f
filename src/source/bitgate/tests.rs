//! The gate's decisions on made-up streams: keyframes every 0.5 s with
//! eleven delta frames between them, and a pixel gate that looks at every
//! decoded keyframe.

use super::*;

/// Plays stretches of delta frames (each `sizes`, in order) through `gate`;
/// `moved(i)` is what the pixel gate says of stretch `i` when it is
/// decoded; `occupied` what it says of the results. Returns, per stretch,
/// whether its keyframe was decoded.
struct Stream {
    gate: Arc<BitGate>,
    t: f64,
    teacher: Teacher,
}

impl Stream {
    fn new(spec: &MotionSpec) -> Stream {
        Stream {
            gate: BitGate::new(spec, 0.0).expect("gate on"),
            t: 0.0,
            teacher: Teacher::default(),
        }
    }

    /// One stretch of eleven delta frames of `size` bytes (the first and
    /// the seventh `spike` bytes, as rate control does), then its keyframe.
    fn stretch(&mut self, size: usize, spike: usize, moved: bool, occupied: bool) -> bool {
        for i in 0..11 {
            self.gate.delta(if i % 6 == 0 { spike } else { size });
        }
        self.t += 0.5;
        let decoded = self.gate.keyframe(self.t, self.teacher);
        if decoded {
            self.teacher = Teacher {
                occupied,
                last_look: Some((self.t, moved)),
            };
        }
        decoded
    }

    fn quiet(&mut self, n: usize) -> Vec<bool> {
        (0..n)
            .map(|_| self.stretch(200, 3_000, false, false))
            .collect()
    }
}

#[test]
fn off_unless_motion_gating_and_its_compressed_stage_are_on() {
    assert!(BitGate::new(&MotionSpec::default(), 0.0).is_some());
    let off = MotionSpec {
        compressed: false,
        ..MotionSpec::default()
    };
    assert!(BitGate::new(&off, 0.0).is_none());
    let no_motion = MotionSpec {
        enabled: false,
        ..MotionSpec::default()
    };
    assert!(BitGate::new(&no_motion, 0.0).is_none());
}

#[test]
fn everything_is_decoded_until_still_stretches_are_learned() {
    let mut s = Stream::new(&MotionSpec::default());
    // Each decoded keyframe's stretch is learned once the pixel gate has
    // looked at it, that is at the next keyframe.
    assert!(s.quiet(MIN_LEARNED).iter().all(|d| *d));
    assert!(s.gate.floor().is_none());
    assert!(!s.quiet(1)[0], "the fourth still stretch learned: skipped");
    assert!(s.gate.floor().is_some());
}

#[test]
fn a_quiet_scene_is_decoded_only_every_max_unscored_secs() {
    let spec = MotionSpec {
        max_unscored_secs: 3.0,
        ..MotionSpec::default()
    };
    let mut s = Stream::new(&spec);
    s.quiet(1 + MIN_LEARNED);
    // 30 s more: one keyframe in six (every 3 s) is decoded.
    let decoded = s.quiet(60).iter().filter(|d| **d).count();
    assert_eq!(decoded, 10, "one every 3 s over 30 s");
}

#[test]
fn streams_learning_together_are_forced_at_their_own_phases() {
    let forced = |phase: f64| {
        let mut s = Stream::new(&MotionSpec::default());
        s.gate = BitGate::new(&MotionSpec::default(), phase).expect("gate on");
        s.quiet(MIN_LEARNED);
        let after: Vec<bool> = s.quiet(12);
        after.iter().position(|d| *d).expect("a forced decode")
    };
    // 3 s apart at 0.5 s a keyframe: the first after learning comes six
    // keyframes on, or three with half the period taken off.
    assert_eq!(forced(0.0), 5, "the learning keyframe was the last sent");
    assert_eq!(forced(0.5), 2);
}

#[test]
fn a_busier_stretch_is_decoded_at_once() {
    let mut s = Stream::new(&MotionSpec::default());
    s.quiet(1 + MIN_LEARNED);
    assert!(!s.stretch(200, 3_000, false, false), "quiet: skipped");
    // Motion: most delta frames grow, not only the spikes.
    assert!(s.stretch(2_500, 9_000, true, false), "busy: decoded");
    // Moved stretches are not learned: the next busy one is decoded too.
    assert!(s.stretch(2_500, 9_000, true, false));
}

#[test]
fn spikes_alone_do_not_open_the_gate() {
    let mut s = Stream::new(&MotionSpec::default());
    s.quiet(1 + MIN_LEARNED);
    // One huge frame after the keyframe (a quality refresh), the rest quiet.
    for i in 0..11 {
        s.gate.delta(if i == 0 { 40_000 } else { 200 });
    }
    assert!(!s.gate.keyframe(s.t + 0.5, s.teacher));
}

#[test]
fn an_occupied_scene_is_decoded_every_second() {
    let mut s = Stream::new(&MotionSpec::default());
    s.quiet(1 + MIN_LEARNED);
    // A car parks: its arrival is decoded and holds a detection; then
    // the picture is still but the results still hold it.
    assert!(s.stretch(2_500, 9_000, true, true));
    let seen: Vec<bool> = (0..8).map(|_| s.stretch(200, 3_000, false, true)).collect();
    assert_eq!(
        seen.iter().filter(|d| **d).count(),
        4,
        "every other 0.5 s stretch: {seen:?}"
    );
}

#[test]
fn after_something_left_keyframes_come_every_second_for_a_while() {
    let mut s = Stream::new(&MotionSpec::default());
    s.quiet(1 + MIN_LEARNED);
    assert!(s.stretch(2_500, 9_000, true, true), "someone arrives");
    // They leave: the results are empty from the next decoded keyframe on,
    // and frames keep coming every second so the occurrence can end.
    let after: Vec<bool> = (0..30)
        .map(|_| s.stretch(200, 3_000, false, false))
        .collect();
    let first = after[..20].iter().filter(|d| **d).count();
    let later = after[20..].iter().filter(|d| **d).count();
    assert!(first >= 9, "every second for 10 s: {after:?}");
    assert!(later <= 2, "then every 3 s: {after:?}");
}

#[test]
fn a_stretch_without_delta_frames_cannot_be_judged() {
    let mut s = Stream::new(&MotionSpec::default());
    s.quiet(1 + MIN_LEARNED);
    // An intra-only stream: keyframe after keyframe.
    assert!(s.gate.keyframe(s.t + 0.1, s.teacher));
    assert!(s.gate.keyframe(s.t + 0.2, s.teacher));
}

#[test]
fn the_floor_follows_a_noisier_still_scene() {
    let mut s = Stream::new(&MotionSpec::default());
    s.quiet(1 + MIN_LEARNED);
    let before = s.gate.floor().expect("learned");
    // Night gain: the still scene's delta frames triple. The pixel gate
    // still sees nothing move, so these stretches are learned as still.
    let night: Vec<bool> = (0..WINDOW + 8)
        .map(|_| s.stretch(600, 3_000, false, false))
        .collect();
    let after = s.gate.floor().expect("learned");
    assert!(after > 2.0 * before, "floor {before} → {after}");
    let tail = &night[night.len() - 6..];
    assert!(
        tail.iter().filter(|d| **d).count() <= 1,
        "skipped again once learned: {night:?}"
    );
}

#[test]
fn sensitivity_scales_the_floor() {
    let floor = |sensitivity: f32| {
        let spec = MotionSpec {
            compressed_sensitivity: sensitivity,
            ..MotionSpec::default()
        };
        let mut s = Stream::new(&spec);
        s.quiet(1 + MIN_LEARNED);
        s.gate.floor().expect("learned")
    };
    assert!(floor(1.0) < floor(0.5) && floor(0.5) < floor(0.0));
}

#[test]
fn time_going_back_restarts_the_count() {
    let mut s = Stream::new(&MotionSpec::default());
    s.quiet(1 + MIN_LEARNED);
    s.quiet(1);
    for _ in 0..11 {
        s.gate.delta(200);
    }
    assert!(s.gate.keyframe(0.1, s.teacher), "an earlier time: decoded");
}
