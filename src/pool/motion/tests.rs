use std::sync::Arc;
use std::time::{Instant, SystemTime};

use super::*;
use crate::domain::StreamId;

const W: u32 = 128;
const H: u32 = 96;

/// A grey frame at stream time `t`, with a white square at `square`
/// (normalised top-left corner, 0.2 wide) if given.
fn frame(t: f64, square: Option<(f32, f32)>) -> Frame {
    let mut rgb = vec![90u8; (W * H * 3) as usize];
    if let Some((sx, sy)) = square {
        for y in 0..H {
            for x in 0..W {
                let (fx, fy) = (x as f32 / W as f32, y as f32 / H as f32);
                if fx >= sx && fx < sx + 0.2 && fy >= sy && fy < sy + 0.2 {
                    let i = ((y * W + x) * 3) as usize;
                    rgb[i..i + 3].fill(250);
                }
            }
        }
    }
    Frame {
        stream_id: StreamId::new("s"),
        seq: 0,
        wall: SystemTime::now(),
        arrived: Instant::now(),
        stream_secs: t,
        width: W,
        height: H,
        rgb,
        content: [0.0, 0.0, 1.0, 1.0],
        aspect: 0.0,
        models: Arc::from(vec![0usize]),
    }
}

fn spec() -> MotionSpec {
    MotionSpec {
        max_unscored_secs: 3.0,
        ..MotionSpec::default()
    }
}

/// Scores `f` through `g` if the gate says so (recording `results`); true
/// when it was scored.
fn step(g: &Gate<u32>, f: &Frame, results: u32) -> bool {
    match g.decide(f) {
        Decision::Score(ticket) => {
            g.scored(ticket, results, false);
            true
        }
        Decision::Repeat(r) => {
            assert_ne!(r, u32::MAX);
            false
        }
    }
}

#[test]
fn a_still_scene_is_scored_every_max_unscored_secs() {
    let g = Gate::<u32>::new(&spec()).expect("enabled");
    let scored: Vec<f64> = (0..20)
        .map(|i| i as f64 * 0.5)
        .filter(|&t| step(&g, &frame(t, None), 1))
        .collect();
    assert_eq!(scored, vec![0.0, 3.0, 6.0, 9.0]);
}

#[test]
fn a_phase_moves_the_first_refresh_earlier_and_keeps_the_period() {
    let g = Gate::<u32>::with_phase(&spec(), 0.5).expect("enabled");
    let scored: Vec<f64> = (0..20)
        .map(|i| i as f64 * 0.5)
        .filter(|&t| step(&g, &frame(t, None), 1))
        .collect();
    assert_eq!(scored, vec![0.0, 1.5, 4.5, 7.5]);
}

#[test]
fn the_last_results_stand_for_unscored_frames() {
    let g = Gate::<u32>::new(&spec()).expect("enabled");
    assert!(step(&g, &frame(0.0, None), 7));
    assert_eq!(g.decide(&frame(0.5, None)), Decision::Repeat(7));
}

#[test]
fn a_moving_object_is_scored_and_slow_change_adds_up() {
    let g = Gate::<u32>::new(&spec()).expect("enabled");
    assert!(step(&g, &frame(0.0, None), 0));
    assert!(step(&g, &frame(0.5, Some((0.1, 0.1))), 1), "appears");
    assert!(!step(&g, &frame(1.0, Some((0.1, 0.1))), 1), "stands still");
    assert!(step(&g, &frame(1.5, Some((0.5, 0.5))), 1), "moves");
}

#[test]
fn motion_inside_a_mask_is_ignored() {
    let masked = MotionSpec {
        masks: vec![vec![(0.0, 0.0), (0.5, 0.0), (0.5, 0.5), (0.0, 0.5)]],
        ..spec()
    };
    let g = Gate::<u32>::new(&masked).expect("enabled");
    assert!(step(&g, &frame(0.0, None), 0));
    assert!(
        !step(&g, &frame(0.5, Some((0.1, 0.1))), 0),
        "inside the mask"
    );
    assert!(step(&g, &frame(1.0, Some((0.6, 0.6))), 0), "outside it");
}

#[test]
fn an_occupied_scene_is_rechecked_sooner() {
    let g = Gate::<u32>::new(&spec()).expect("enabled");
    let Decision::Score(t) = g.decide(&frame(0.0, Some((0.3, 0.3)))) else {
        panic!("first frame is scored");
    };
    g.scored(t, 1, true);
    assert!(matches!(
        g.decide(&frame(0.5, Some((0.3, 0.3)))),
        Decision::Repeat(1)
    ));
    assert!(matches!(
        g.decide(&frame(1.0, Some((0.3, 0.3)))),
        Decision::Score(_)
    ));
}

#[test]
fn without_the_last_results_a_frame_is_scored() {
    let g = Gate::<u32>::new(&spec()).expect("enabled");
    let Decision::Score(first) = g.decide(&frame(0.0, None)) else {
        panic!("first frame is scored");
    };
    // Its results are not in yet: the next still frame is scored too, and
    // the older frame's late results do not replace the newer reference.
    let Decision::Score(second) = g.decide(&frame(0.5, None)) else {
        panic!("no results to repeat");
    };
    g.scored(first, 1, false);
    assert!(matches!(g.decide(&frame(1.0, None)), Decision::Score(_)));
    g.scored(second, 2, false);
    assert!(second > first);
}

#[test]
fn gating_off_makes_no_gate() {
    let off = MotionSpec {
        enabled: false,
        ..spec()
    };
    assert!(Gate::<u32>::new(&off).is_none());
}

#[test]
fn point_in_polygon() {
    let square = [(0.2, 0.2), (0.8, 0.2), (0.8, 0.8), (0.2, 0.8)];
    assert!(inside((0.5, 0.5), &square));
    assert!(!inside((0.1, 0.5), &square));
}
