//! Search and backtest over 24 h of 1 fps frame embeddings for one stream
//! (86,400 frames of 512 values, as a CLIP ViT-B/32 would give), with the
//! prompt embedded by the generated dual encoder's text half each time, as
//! the API does. `cargo bench --bench search`.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use sightline::control::compile_event;
use sightline::domain::EventId;
use sightline::domain::FrameEmbedding;
use sightline::domain::{EventSpec, MatchParams};
use sightline::matcher::{Baseline, Rule};
use sightline::model::{Manifest, ModelSet, PromptModel};
use sightline::scene::embeddings::{backtest, search, Embeddings};

const FRAMES: i64 = 86_400;

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!("search bench: run it with `cargo bench --bench search`");
        return;
    }
    sightline::model::init_runtime(None).expect("ONNX Runtime (run scripts/setup)");
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/colour-clip");
    let manifest = Arc::new(Manifest::load(&dir).expect("manifest"));
    let prompts = PromptModel::load(&manifest).expect("model");
    let PromptModel::Text(encoder) = &prompts else {
        panic!("not a dual encoder")
    };
    let models = Arc::new(ModelSet::one(
        "colour",
        Arc::clone(&manifest),
        prompts.clone(),
    ));

    // A day of frames: mostly the background, with a red hour in the middle.
    let store = Embeddings::new(24.0);
    let grey = encoder.embed("a photo").expect("embed").0;
    let red = encoder.embed("red").expect("embed").0;
    let mut noise = 0x2545_f491_4f6c_dd1du64;
    for i in 0..FRAMES {
        let base = if (40_000..43_600).contains(&i) {
            &red
        } else {
            &grey
        };
        let v: Vec<f32> = base
            .iter()
            .map(|x| {
                noise ^= noise << 13;
                noise ^= noise >> 7;
                noise ^= noise << 17;
                x + ((noise % 1000) as f32 / 1000.0 - 0.5) * 0.02
            })
            .collect();
        store.push("cam", FrameEmbedding::new(i * 1000, i as f64, &v));
    }

    let event = |prompt: &str| EventSpec {
        id: EventId::new("bench"),
        prompt: prompt.into(),
        label: "bench".into(),
        classes: None,
        min_confidence: Some(0.5),
        model: None,
        min_count: 1,
        min_area: 0.0,
        region: None,
        negatives: vec!["a blue object".into()],
        min_lift: 2.0,
        baseline_secs: 600.0,
        matching: MatchParams::default(),
        objects: None,
    };
    let time = |name: &str, mut f: Box<dyn FnMut() -> usize>| {
        let mut ms: Vec<f64> = Vec::new();
        let mut found = 0;
        for _ in 0..21 {
            let t = Instant::now();
            found = f();
            ms.push(t.elapsed().as_secs_f64() * 1000.0);
        }
        ms.sort_by(|a, b| a.total_cmp(b));
        println!(
            "{name} over {FRAMES} frames x 512: median {:.1} ms, max {:.1} ms, min {:.1} ms (n=21, 2 cores); {found} found",
            ms[10], ms[20], ms[0]
        );
    };
    let p = Arc::clone(&models);
    let st = &store;
    time(
        "search (embed the query + scan)",
        Box::new(move || {
            let Rule::Text(r) = compile_event(&event("a red object"), &p)
                .expect("compile")
                .rule
            else {
                unreachable!()
            };
            st.with("cam", i64::MIN, i64::MAX, |f| {
                search(f, &r.vectors, r.scale, 0.5).len()
            })
        }),
    );
    let p = Arc::clone(&models);
    time(
        "backtest (embed + replay)",
        Box::new(move || {
            let c = compile_event(&event("a red object"), &p).expect("compile");
            let Rule::Text(r) = c.rule else {
                unreachable!()
            };
            st.with("cam", i64::MIN, i64::MAX, |f| {
                backtest(f, &r, c.matching, Baseline::default()).len()
            })
        }),
    );
    // What the matcher thread spends when an event first judges the stream.
    for secs in [600.0, 86_400.0] {
        let e = EventSpec {
            baseline_secs: secs,
            ..event("a red object")
        };
        let Rule::Text(r) = compile_event(&e, &models).expect("compile").rule else {
            unreachable!()
        };
        time(
            &format!("starting baseline, baseline_secs {secs}"),
            Box::new(move || {
                let b = st.baseline("cam", &r, FRAMES * 1000, FRAMES as f64);
                usize::from(b.mean().is_some())
            }),
        );
    }
}
