use std::collections::HashSet;

use proptest::prelude::*;

use super::*;

fn person(score: f32, bbox: [f32; 4]) -> Detection {
    Detection {
        label: Arc::from("person"),
        score,
        bbox,
    }
}

/// A box of width 0.1 and height 0.3 whose left edge is at `x`, top at `y`.
fn at(x: f32, y: f32) -> [f32; 4] {
    [x, y, x + 0.1, y + 0.3]
}

#[test]
fn a_walker_keeps_one_id() {
    let mut tracks = Tracks::new(TrackParams::default());
    // 0.03 of the width per sampled frame (2 fps): about 6 s across.
    let ids: Vec<Option<u64>> = (0..20)
        .map(|i| tracks.update(i as f64 * 0.5, &[person(0.8, at(0.03 * i as f32, 0.4))])[0])
        .collect();
    assert!(ids.iter().all(|id| *id == Some(1)), "{ids:?}");
    assert_eq!(tracks.live()[0].hits, 20);
}

#[test]
fn a_fast_walker_is_followed_by_its_velocity() {
    // 0.08 per frame: consecutive boxes overlap less than min_iou, so the
    // second box is tied by nearness and the rest by the learnt speed.
    let mut tracks = Tracks::new(TrackParams::default());
    assert!(iou(&at(0.0, 0.4), &at(0.08, 0.4)) < TrackParams::default().min_iou);
    let ids: Vec<Option<u64>> = (0..12)
        .map(|i| tracks.update(i as f64 * 0.5, &[person(0.8, at(0.08 * i as f32, 0.4))])[0])
        .collect();
    assert!(ids.iter().all(|id| *id == Some(1)), "{ids:?}");
}

#[test]
fn someone_far_away_is_a_new_track() {
    let mut tracks = Tracks::new(TrackParams::default());
    tracks.update(0.0, &[person(0.9, at(0.1, 0.4))]);
    // Half a second later, 0.6 of the width away: 2 box heights, twice the
    // reach of half a second at the default speed limit.
    assert_eq!(
        tracks.update(0.5, &[person(0.9, at(0.7, 0.4))]),
        vec![Some(2)]
    );
    // A box of a very different size is not the same object either.
    let big = [0.1, 0.1, 0.5, 0.95];
    assert_eq!(tracks.update(1.0, &[person(0.9, big)]), vec![Some(3)]);
}

#[test]
fn a_short_gap_keeps_the_id_and_a_long_one_does_not() {
    let p = TrackParams::default();
    let mut tracks = Tracks::new(p);
    assert_eq!(
        tracks.update(0.0, &[person(0.9, at(0.5, 0.4))]),
        vec![Some(1)]
    );
    for i in 1..=p.max_misses {
        assert!(tracks.update(i as f64 * 0.5, &[]).is_empty());
    }
    let back = (p.max_misses + 1) as f64 * 0.5;
    assert_eq!(
        tracks.update(back, &[person(0.9, at(0.5, 0.4))]),
        vec![Some(1)]
    );
    for i in 1..=p.max_misses + 1 {
        tracks.update(back + i as f64 * 0.5, &[]);
    }
    assert!(tracks.live().is_empty());
    let later = back + (p.max_misses + 2) as f64 * 0.5;
    assert_eq!(
        tracks.update(later, &[person(0.9, at(0.5, 0.4))]),
        vec![Some(2)]
    );
}

#[test]
fn low_scores_continue_tracks_but_never_open_them() {
    let mut tracks = Tracks::new(TrackParams::default());
    assert_eq!(tracks.update(0.0, &[person(0.3, at(0.2, 0.4))]), vec![None]);
    assert_eq!(
        tracks.update(0.5, &[person(0.9, at(0.2, 0.4))]),
        vec![Some(1)]
    );
    // Half hidden: a low score, still the same person.
    assert_eq!(
        tracks.update(1.0, &[person(0.3, at(0.21, 0.4))]),
        vec![Some(1)]
    );
    assert_eq!(tracks.live()[0].misses, 0);
    assert_eq!(tracks.live()[0].best, 0.9);
    // Below `low`, a box is noise.
    assert_eq!(
        tracks.update(1.5, &[person(0.05, at(0.21, 0.4))]),
        vec![None]
    );
    assert_eq!(tracks.live()[0].misses, 1);
}

#[test]
fn a_confident_box_is_preferred_over_a_low_one_for_the_same_track() {
    let mut tracks = Tracks::new(TrackParams::default());
    tracks.update(0.0, &[person(0.9, at(0.2, 0.4))]);
    // The low box overlaps the track more, but confident boxes go first.
    let got = tracks.update(
        0.5,
        &[person(0.3, at(0.2, 0.4)), person(0.8, at(0.23, 0.4))],
    );
    assert_eq!(got, vec![None, Some(1)]);
}

#[test]
fn two_people_crossing_keep_their_ids() {
    let mut tracks = Tracks::new(TrackParams::default());
    let mut seen: Vec<(Option<u64>, Option<u64>)> = Vec::new();
    for i in 0..21 {
        let x = 0.03 * i as f32;
        // A walks right along y 0.2; B walks left along y 0.3.
        let got = tracks.update(
            i as f64 * 0.5,
            &[person(0.9, at(x, 0.2)), person(0.9, at(0.6 - x, 0.3))],
        );
        seen.push((got[0], got[1]));
    }
    assert!(seen.iter().all(|s| *s == (Some(1), Some(2))), "{seen:?}");
}

#[test]
fn labels_are_never_mixed() {
    let mut tracks = Tracks::new(TrackParams::default());
    tracks.update(0.0, &[person(0.9, at(0.2, 0.4))]);
    let car = Detection {
        label: Arc::from("car"),
        score: 0.9,
        bbox: at(0.2, 0.4),
    };
    assert_eq!(tracks.update(0.5, &[car]), vec![Some(2)]);
    assert_eq!(tracks.live().len(), 2);
}

fn frame() -> impl Strategy<Value = Vec<Detection>> {
    proptest::collection::vec(
        (0.0f32..1.0, 0.0f32..0.9, 0.0f32..0.7, 0.05f32..0.3)
            .prop_map(|(s, x, y, w)| person(s, [x, y, (x + w).min(1.0), (y + 2.0 * w).min(1.0)])),
        0..12,
    )
}

proptest! {
    /// No track has two boxes in one frame; every confident box has a
    /// track; an id, once dropped, never comes back; new ids only grow.
    #[test]
    fn tracks_are_well_formed(frames in proptest::collection::vec(frame(), 1..40)) {
        let p = TrackParams::default();
        let mut tracks = Tracks::new(p);
        let (mut dropped, mut highest) = (HashSet::new(), 0u64);
        let mut before: HashSet<u64> = HashSet::new();
        for (i, dets) in frames.iter().enumerate() {
            let owners = tracks.update(i as f64 * 0.5, dets);
            prop_assert_eq!(owners.len(), dets.len());
            let ids: Vec<u64> = owners.iter().flatten().copied().collect();
            let unique: HashSet<u64> = ids.iter().copied().collect();
            prop_assert_eq!(unique.len(), ids.len(), "two boxes on one track");
            for (d, o) in dets.iter().zip(&owners) {
                if d.score >= p.high {
                    prop_assert!(o.is_some());
                }
                if d.score < p.low {
                    prop_assert!(o.is_none());
                }
            }
            for id in &ids {
                prop_assert!(!dropped.contains(id), "id {} reused", id);
                if !before.contains(id) {
                    prop_assert!(*id > highest, "new id {} not above {}", id, highest);
                    highest = *id;
                }
            }
            let now: HashSet<u64> = tracks.live().iter().map(|t| t.id).collect();
            dropped.extend(before.difference(&now).copied());
            before = now;
        }
    }
}
