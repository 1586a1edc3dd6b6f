//! Prompt resolution, per-frame conditions and the matcher across streams.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use super::*;
use crate::domain::{Detection, EventId, Scores, StreamId};
use crate::domain::{EventSpec, Region};
use crate::model::vocabulary::resolve_classes;

fn labels(names: &[&str]) -> Vec<Arc<str>> {
    names.iter().map(|n| Arc::from(*n)).collect()
}

/// "person" compiled against a detector that knows only people.
fn person_event() -> Result<CompiledEvent, String> {
    let e = event("person");
    let rule = LabelRule::compile(&e, &labels(&["person"]), 0.5)?;
    Ok(CompiledEvent::new(
        &e,
        Rule::Labels(rule),
        0,
        "person".into(),
    ))
}

fn event(prompt: &str) -> EventSpec {
    EventSpec {
        id: EventId::new("e"),
        prompt: prompt.into(),
        label: "alert".into(),
        classes: None,
        min_confidence: Some(0.5),
        model: None,
        min_count: 1,
        min_area: 0.0,
        region: None,
        negatives: Vec::new(),
        min_lift: 2.0,
        baseline_secs: 600.0,
        matching: MatchParams::default(),
        objects: None,
    }
}

fn person(score: f32, x: f32) -> Detection {
    Detection {
        label: Arc::from("person"),
        score,
        bbox: [x, 0.4, x + 0.1, 0.6],
    }
}

fn scores(stream: &str, t: f64, dets: Vec<Detection>) -> Scores {
    Scores {
        stream_id: StreamId::new(stream),
        seq: 0,
        wall: SystemTime::now(),
        arrived: Instant::now(),
        stream_secs: t,
        detections: dets,
        embedding: None,
        model: 0,
        queued: Duration::ZERO,
        inference: Duration::ZERO,
        repeated: false,
        picture: None,
    }
}

#[test]
fn prompts_resolve_through_synonyms() {
    let l = labels(&["person"]);
    for p in [
        "Detect intruder",
        "someone at the door",
        "PEDESTRIANS crossing",
        "a person",
        "people",
    ] {
        assert_eq!(resolve_classes(p, None, &l).unwrap(), l, "{p}");
    }
}

#[test]
fn coco_words_people_write_resolve_to_coco_labels() {
    let coco = labels(&[
        "person",
        "bicycle",
        "car",
        "motorcycle",
        "bus",
        "truck",
        "cat",
        "dog",
        "bird",
        "backpack",
        "handbag",
        "suitcase",
        "cup",
        "dining table",
    ]);
    let want = |names: &[&str]| labels(names);
    for (prompt, expect) in [
        ("Detect car in the driveway", want(&["car"])),
        ("Detect a truck at the loading bay", want(&["truck"])),
        (
            "any vehicle on the lawn",
            want(&["car", "motorcycle", "bus", "truck"]),
        ),
        ("a pet on the sofa", want(&["cat", "dog"])),
        ("Detect dog on the sofa", want(&["dog"])),
        ("bike theft", want(&["bicycle"])),
        (
            "a parcel left at the door",
            want(&["backpack", "handbag", "suitcase"]),
        ),
        ("buses in the depot", want(&["bus"])),
        ("Detect intruder", want(&["person"])),
        (
            "someone near the dining table",
            want(&["person", "dining table"]),
        ),
    ] {
        assert_eq!(
            resolve_classes(prompt, None, &coco).unwrap(),
            expect,
            "{prompt}"
        );
    }
    // A person-only model still refuses cars, naming what it knows.
    let err = resolve_classes("Detect car", None, &labels(&["person"])).unwrap_err();
    assert!(
        err.contains("the model detects: person") && err.contains("intruder"),
        "{err}"
    );
    assert!(
        !err.contains("vehicle"),
        "no words for labels it lacks: {err}"
    );
}

#[test]
fn a_prompt_outside_the_vocabulary_names_the_vocabulary() {
    let err = resolve_classes("Detect a forklift", None, &labels(&["person"])).unwrap_err();
    assert!(
        err.contains("forklift") && err.contains("the model detects: person"),
        "{err}"
    );
    let err = resolve_classes("", Some(&["cat".to_string()]), &labels(&["person"])).unwrap_err();
    assert!(err.contains("\"cat\""), "{err}");
}

#[test]
fn label_names_match_with_underscores_as_spaces() {
    let l = labels(&["FACE_FEMALE", "FACE_MALE", "FEET_EXPOSED"]);
    let got = resolve_classes("watch for a face female", None, &l).unwrap();
    assert_eq!(got, labels(&["FACE_FEMALE"]));
}

#[test]
fn conditions_count_region_area_and_confidence() {
    let mut e = event("person");
    e.min_count = 2;
    e.region = Some(Region {
        name: "left".into(),
        points: vec![(0.0, 0.0), (0.5, 0.0), (0.5, 1.0), (0.0, 1.0)],
    });
    let rule = LabelRule::compile(&e, &labels(&["person"]), 0.5).unwrap();
    let v = rule.evaluate(&[
        person(0.9, 0.1),
        person(0.8, 0.2),
        person(0.95, 0.7),
        person(0.3, 0.1),
    ]);
    assert_eq!(
        (v.matched, v.count),
        (true, 2),
        "the right-hand and weak ones do not count"
    );
    assert!((v.best - 0.9).abs() < 1e-6);
    assert_eq!(
        rule.explain(v.count, v.best, Some("person")),
        "2 people detected (best 0.90) in region 'left'"
    );
    let v = rule.evaluate(&[person(0.9, 0.1)]);
    assert!(!v.matched, "one is below min_count");
}

#[test]
fn region_test_is_even_odd() {
    let square = [(0.2, 0.2), (0.8, 0.2), (0.8, 0.8), (0.2, 0.8)];
    assert!(rule::inside(&square, 0.5, 0.5));
    assert!(!rule::inside(&square, 0.1, 0.5));
    assert!(!rule::inside(&square, 0.9, 0.9));
}

#[test]
fn an_event_is_judged_only_on_the_streams_it_is_wired_to() -> Result<(), String> {
    let only_a = Scope::Only([StreamId::new("a")].into_iter().collect());
    let ev = Arc::new(person_event()?.judged_on(only_a));
    let mut m = Matcher::new(vec![Arc::clone(&ev)]);
    let mut out = Vec::new();
    for i in 0..8 {
        for s in ["a", "b"] {
            out.extend(m.observe(&scores(s, i as f64, vec![person(0.9, 0.1)])));
        }
    }
    assert!(out.iter().all(|o| o.stream_id.as_str() == "a"), "{out:?}");
    assert_eq!(out.len(), 1, "a start on a, nothing on b");
    // Unwired from a (its alert went): its tracker goes without an end, and
    // people in view make nothing more.
    m.set_events(vec![Arc::new(
        (*ev).clone().judged_on(Scope::Only(Default::default())),
    )]);
    for i in 8..16 {
        assert!(m
            .observe(&scores("a", i as f64, vec![person(0.9, 0.1)]))
            .is_empty());
    }
    Ok(())
}

#[test]
fn matcher_emits_start_and_end_with_one_occurrence_id_per_stream() {
    let ev = Arc::new(person_event().unwrap());
    let mut n = 0;
    let mut m = Matcher::with_ids(
        vec![ev],
        Box::new(move || {
            n += 1;
            format!("occ-{n}")
        }),
    );
    let mut out = Vec::new();
    for i in 0..20 {
        let t = i as f64 * 0.5;
        let seen = (2.0..6.0).contains(&t);
        for s in ["a", "b"] {
            let dets = if seen && (s == "a" || t >= 4.0) {
                vec![person(0.9, 0.1)]
            } else {
                vec![]
            };
            out.extend(m.observe(&scores(s, t, dets)));
        }
    }
    let a: Vec<_> = out.iter().filter(|o| o.stream_id.as_str() == "a").collect();
    let b: Vec<_> = out.iter().filter(|o| o.stream_id.as_str() == "b").collect();
    assert_eq!(a.len(), 2);
    assert_eq!((a[0].phase, a[1].phase), (Phase::Start, Phase::End));
    assert_eq!(a[0].occurrence_id, a[1].occurrence_id);
    assert_eq!((a[0].start_time, a[1].end_time), (2.0, 5.5));
    assert_eq!(b.len(), 2);
    assert_ne!(
        a[0].occurrence_id, b[0].occurrence_id,
        "streams are tracked apart"
    );
    assert_eq!(b[0].start_time, 4.0);
}

#[test]
fn close_stream_ends_open_occurrences() {
    let ev = Arc::new(person_event().unwrap());
    let mut m = Matcher::new(vec![ev]);
    for i in 0..3 {
        m.observe(&scores("a", i as f64 * 0.5, vec![person(0.9, 0.1)]));
    }
    let ended = m.close_stream(&StreamId::new("a"), 1.5, SystemTime::now(), Instant::now());
    assert_eq!(ended.len(), 1);
    assert_eq!(ended[0].phase, Phase::End);
    assert!(m
        .close_stream(&StreamId::new("a"), 2.0, SystemTime::now(), Instant::now())
        .is_empty());
}

#[test]
fn alerts_name_the_tracked_objects_they_are_about() {
    let ev = Arc::new(person_event().unwrap());
    let mut m = Matcher::new(vec![ev]);
    let mut out = Vec::new();
    // One walker from t=0; a second joins at t=2 and leaves at t=4; the
    // first leaves at t=6.
    for i in 0..20 {
        let t = i as f64 * 0.5;
        let mut dets = Vec::new();
        if t < 6.0 {
            dets.push(person(0.9, 0.02 * i as f32));
        }
        if (2.0..4.0).contains(&t) {
            dets.push(person(0.8, 0.8 - 0.02 * i as f32));
        }
        out.extend(m.observe(&scores("a", t, dets)));
    }
    assert_eq!(out.len(), 2, "{out:?}");
    let ids = |o: &Occurrence| o.objects.iter().map(|x| x.track_id).collect::<Vec<_>>();
    assert_eq!(ids(&out[0]), vec![1], "the start names the first walker");
    assert_eq!(out[0].objects[0].first_seen, 0.0);
    assert_eq!(ids(&out[1]), vec![1, 2], "the end names everyone involved");
    let second = &out[1].objects[1];
    assert_eq!((second.first_seen, second.last_seen), (2.0, 3.5));
    assert_eq!(second.best_score, 0.8);
    // The first walker was last seen at 5.5, at x = 0.22.
    assert_eq!(out[1].objects[0].last_seen, 5.5);
    assert!((out[1].objects[0].bbox[0] - 0.22).abs() < 1e-6);
    assert_eq!(
        m.tracks(&StreamId::new("a"), 0).len(),
        0,
        "both tracks expired"
    );
}

fn object_event(rules: crate::domain::ObjectRules) -> Arc<CompiledEvent> {
    let e = EventSpec {
        objects: Some(rules),
        ..event("person")
    };
    let rule = LabelRule::compile(&e, &labels(&["person"]), 0.5).unwrap();
    Arc::new(CompiledEvent::new(
        &e,
        Rule::Labels(rule),
        0,
        "person".into(),
    ))
}

#[test]
fn per_object_events_give_each_object_its_occurrence() {
    let ev = object_event(crate::domain::ObjectRules {
        per_object: true,
        ..Default::default()
    });
    let mut m = Matcher::new(vec![ev]);
    let mut out = Vec::new();
    // A in view 0–5 s, B 2–8 s (far apart).
    for i in 0..30 {
        let t = i as f64 * 0.5;
        let mut dets = Vec::new();
        if t < 5.0 {
            dets.push(person(0.9, 0.05));
        }
        if (2.0..8.0).contains(&t) {
            dets.push(person(0.9, 0.7));
        }
        out.extend(m.observe(&scores("a", t, dets)));
    }
    let of = |phase: Phase| -> Vec<(Option<u64>, f64)> {
        out.iter()
            .filter(|o| o.phase == phase)
            .map(|o| {
                (
                    o.track_id,
                    if phase == Phase::Start {
                        o.start_time
                    } else {
                        o.end_time
                    },
                )
            })
            .collect()
    };
    assert_eq!(of(Phase::Start), vec![(Some(1), 0.0), (Some(2), 2.0)]);
    let mut ends = of(Phase::End);
    ends.sort_by_key(|e| e.0);
    assert_eq!(
        ends,
        vec![(Some(1), 4.5), (Some(2), 7.5)],
        "each ends when it leaves"
    );
    assert!(out.iter().all(|o| o.objects.len() == 1), "one object each");
}

#[test]
fn a_line_event_reports_each_crossing_with_its_count() {
    let ev = object_event(crate::domain::ObjectRules {
        line: Some(crate::domain::Line {
            a: (0.0, 0.7),
            b: (1.0, 0.7),
            direction: crate::domain::Direction::In,
        }),
        ..Default::default()
    });
    let mut m = Matcher::new(vec![ev]);
    let mut out = Vec::new();
    // Walks down the picture (feet 0.5 → 0.9) twice, with a pause between.
    for i in 0..40 {
        let t = i as f64 * 0.5;
        let step = (i % 20) as f32;
        let dets = if step < 9.0 {
            let y = 0.3 + 0.05 * step;
            vec![Detection {
                label: Arc::from("person"),
                score: 0.9,
                bbox: [0.4, y, 0.5, y + 0.2],
            }]
        } else {
            vec![]
        };
        out.extend(m.observe(&scores("a", t, dets)));
    }
    let crossings: Vec<(Phase, u64)> = out
        .iter()
        .filter_map(|o| o.crossing.map(|c| (o.phase, c.count)))
        .collect();
    assert_eq!(
        crossings,
        vec![
            (Phase::Start, 1),
            (Phase::End, 1),
            (Phase::Start, 2),
            (Phase::End, 2)
        ]
    );
    assert_ne!(out[0].track_id, out[2].track_id, "two walks, two tracks");
}
