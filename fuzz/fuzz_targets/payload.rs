//! Whatever an occurrence holds (any text, any float), the payload builder
//! produces JSON that parses back, with confidence within 0..1 and a camera
//! URL without credentials.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sightline::alert::payload;
use sightline::matcher::{Occurrence, Phase};
use sightline::domain::{AlertId, EventId, StreamId};
use std::time::{Duration, Instant, UNIX_EPOCH};

fuzz_target!(|data: &[u8]| {
    if data.len() < 12 {
        return;
    }
    let f = |i: usize| f32::from_le_bytes([data[i], data[i + 1], data[i + 2], data[i + 3]]);
    let text = String::from_utf8_lossy(&data[12..]).into_owned();
    let mid = (text.len() / 2..=text.len()).find(|&i| text.is_char_boundary(i)).unwrap_or(text.len());
    let (label, url) = text.split_at(mid);
    let occ = Occurrence {
        occurrence_id: text.clone(),
        phase: if data[0] & 1 == 0 { Phase::Start } else { Phase::End },
        event_id: EventId::new(label),
        label: label.to_string(),
        stream_id: StreamId::new(url),
        start_time: f(0) as f64,
        end_time: f(4) as f64,
        confidence: f(8),
        count: data[1] as usize,
        explanation: text.clone(),
        frame_wall: UNIX_EPOCH + Duration::from_millis(u64::from(data[2]) << 32),
        frame_arrived: Instant::now(),
        frame_time: f(4) as f64,
        picture: None,
        boxes: Vec::new(),
    };
    let phase = payload::MessagePhase::from(occ.phase);
    let p = payload::build(&AlertId::new("a"), &occ, phase, url, &payload::Links::default());
    let body = serde_json::to_vec(&p).expect("a payload always serialises");
    let back: serde_json::Value = serde_json::from_slice(&body).expect("and parses back");
    if let Some(c) = back["confidence"].as_f64() {
        assert!((0.0..=1.0).contains(&c), "confidence {c}");
    }
    if let Some(u) = back["camera_url"].as_str() {
        if let Some((_, rest)) = u.split_once("://") {
            let auth = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
            assert!(!auth.contains('@'), "credentials left in {u}");
        }
    }
});
