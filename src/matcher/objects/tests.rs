use std::sync::Arc;

use super::*;
use crate::domain::Detection;
use crate::matcher::track::{TrackParams, Tracks};

fn person(x: f32, y: f32) -> Detection {
    Detection {
        label: Arc::from("person"),
        score: 0.9,
        bbox: [x, y, x + 0.1, y + 0.3],
    }
}

/// The left half of the picture.
fn left_half(tr: &Track) -> bool {
    (tr.bbox[0] + tr.bbox[2]) / 2.0 < 0.5
}

/// Feeds one walker's positions (one per sampled frame, 2 fps; `None`:
/// out of view) and returns each frame's facts.
fn walk(rules: &ObjectRules, path: &[Option<(f32, f32)>]) -> Vec<(f64, Facts)> {
    let mut tracks = Tracks::new(TrackParams::default());
    let mut facts = ObjectFacts::default();
    path.iter()
        .enumerate()
        .map(|(i, p)| {
            let t = i as f64 * 0.5;
            let dets: Vec<Detection> = p.iter().map(|&(x, y)| person(x, y)).collect();
            tracks.update(t, &dets);
            (t, facts.observe(rules, t, tracks.live(), left_half))
        })
        .collect()
}

#[test]
fn dwell_counts_from_entering_the_region() {
    let rules = ObjectRules {
        min_dwell: 3.0,
        ..ObjectRules::default()
    };
    // Outside for 2 s, then standing inside.
    let mut path = vec![Some((0.7, 0.3)); 4];
    path.extend(std::iter::repeat_n(Some((0.3, 0.3)), 12));
    let got = walk(&rules, &path);
    // Moving from 0.7 to 0.3 in one frame is too far for the track, so a new
    // track starts inside at t=2.0 (id 2); it holds from t=5.0.
    let first = got
        .iter()
        .find(|(_, f)| !f.holding.is_empty())
        .expect("holds");
    assert_eq!(first.0, 5.0);
    assert_eq!(first.1.holding, vec![2]);
}

#[test]
fn leaving_the_region_restarts_the_dwell() {
    let rules = ObjectRules {
        min_dwell: 2.0,
        ..ObjectRules::default()
    };
    // Inside for 1.5 s, a step out (x 0.45: centre 0.5), back in.
    let mut path = vec![Some((0.3, 0.3)); 3];
    path.push(Some((0.45, 0.3)));
    path.extend(std::iter::repeat_n(Some((0.3, 0.3)), 6));
    let got = walk(&rules, &path);
    let first = got
        .iter()
        .find(|(_, f)| !f.holding.is_empty())
        .expect("holds");
    assert_eq!(first.0, 4.0, "2 s after coming back at 2.0: {got:?}");
}

#[test]
fn a_short_miss_keeps_the_dwell() {
    let rules = ObjectRules {
        min_dwell: 2.0,
        ..ObjectRules::default()
    };
    let mut path = vec![Some((0.3, 0.3)); 3];
    path.extend([None, None]);
    path.extend(std::iter::repeat_n(Some((0.3, 0.3)), 3));
    let got = walk(&rules, &path);
    // Missed at 1.5 and 2.0, but still in the region since 0.0.
    assert_eq!(got[4].1.holding, vec![1]);
}

#[test]
fn a_parked_object_stops_holding_until_it_moves() {
    let rules = ObjectRules {
        stationary: Some(3.0),
        ..ObjectRules::default()
    };
    let mut path = vec![Some((0.2, 0.3)); 10];
    path.push(Some((0.26, 0.3)));
    path.extend(std::iter::repeat_n(Some((0.26, 0.3)), 3));
    let got = walk(&rules, &path);
    let holding: Vec<bool> = got.iter().map(|(_, f)| !f.holding.is_empty()).collect();
    // Still from 0.0: holds until 3.0 (frames 0–5), then parked; moves at
    // 5.0 (frame 10) and holds again.
    assert_eq!(&holding[..6], &[true; 6]);
    assert_eq!(&holding[6..10], &[false; 4]);
    assert_eq!(&holding[10..], &[true; 4]);
}

#[test]
fn crossings_are_counted_in_their_direction() {
    let line = |direction| Line {
        a: (0.0, 0.6),
        b: (1.0, 0.6),
        direction,
    };
    // Feet at y + 0.3: walking down the picture from 0.47 to 0.77 crosses
    // y = 0.6 from its left-hand side (top) to its right (bottom): "in".
    let down: Vec<Option<(f32, f32)>> = (0..7)
        .map(|i| Some((0.3, 0.17 + 0.05 * i as f32)))
        .collect();
    let up: Vec<Option<(f32, f32)>> = down.iter().rev().copied().collect();
    for (dir, path, want) in [
        (Direction::In, &down, Some(Direction::In)),
        (Direction::In, &up, None),
        (Direction::Out, &up, Some(Direction::Out)),
        (Direction::Any, &up, Some(Direction::Out)),
    ] {
        let rules = ObjectRules {
            line: Some(line(dir)),
            ..ObjectRules::default()
        };
        let got: Vec<Crossing> = walk(&rules, path)
            .into_iter()
            .flat_map(|(_, f)| f.crossings)
            .collect();
        assert_eq!(got.first().map(|c| c.direction), want, "{dir:?}: {got:?}");
        assert!(got.len() <= 1, "{got:?}");
    }
}

#[test]
fn a_move_past_the_end_of_the_segment_is_no_crossing() {
    let l = Line {
        a: (0.0, 0.6),
        b: (0.4, 0.6),
        direction: Direction::Any,
    };
    assert_eq!(crossing(&l, (0.2, 0.5), (0.2, 0.7)), Some(Direction::In));
    assert_eq!(crossing(&l, (0.6, 0.5), (0.6, 0.7)), None);
    assert_eq!(crossing(&l, (0.2, 0.5), (0.2, 0.55)), None);
}
