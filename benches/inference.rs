//! Each bundled detector at each precision its folder has (fp32, and the
//! calibrated int8 file where there is one), one thread calling: how long `detect` takes; how
//! long the motion gate takes to judge a frame of each model's size; and,
//! when `SIGHTLINE_CLIP_MODEL` names an exported dual encoder, how long its
//! image encoder takes per frame and how much memory the model holds.
//! `cargo bench --bench inference` (SIGHTLINE_BENCH_INTRA sets intra-op threads).

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use sightline::domain::Precision;
use sightline::model::{prepare_image, Detector, ImageEncoder, Manifest, PromptModel};

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!("inference bench: run it with `cargo bench --bench inference`");
        return;
    }
    let intra: usize = std::env::var("SIGHTLINE_BENCH_INTRA")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    sightline::model::init_runtime(None).expect("ONNX Runtime (run scripts/setup)");
    // A synthetic gradient: inference time does not depend on what is seen
    // (both graphs keep a fixed number of candidates).
    let img = image::RgbImage::from_fn(640, 480, |x, y| {
        image::Rgb([(x % 256) as u8, (y % 256) as u8, 128])
    });
    // Both bundled detectors, in one run so their ratio holds on a noisy
    // machine.
    for name in ["ssdlite-person", "centernet-coco"] {
        for precision in [Precision::Fp32, Precision::Int8] {
            detector(name, precision, &img, intra);
        }
    }
    for side in [320, 512] {
        motion_gate(side);
    }
    if let Some(dir) = std::env::var_os("SIGHTLINE_CLIP_MODEL") {
        dual_encoder(Path::new(&dir), &img, intra);
    }
}

/// SIGHTLINE_BENCH_PROVIDER (cpu, cuda, tensorrt, openvino; default cpu):
/// where the detectors run. One that cannot load stops the bench.
fn provider() -> sightline::domain::Provider {
    let want = std::env::var("SIGHTLINE_BENCH_PROVIDER").unwrap_or_else(|_| "cpu".into());
    sightline::domain::Provider::ALL
        .iter()
        .find(|(n, _)| *n == want)
        .map(|(_, p)| *p)
        .unwrap_or_else(|| panic!("SIGHTLINE_BENCH_PROVIDER={want:?}: not a provider"))
}

/// Times one bundled detector at `precision` (skipped when its folder has
/// no such file): 10 warm-up frames, then 200.
fn detector(name: &str, precision: Precision, img: &image::RgbImage, intra: usize) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("models")
        .join(name);
    let mut manifest = Manifest::load(&dir).expect("manifest");
    if manifest.choose_precision(Some(precision)).is_err() {
        return;
    }
    manifest.placement.provider = provider();
    let manifest = Arc::new(manifest);
    let mut det = Detector::load(Arc::clone(&manifest), intra).expect("model");
    let (rgb, content) = prepare_image(img, &manifest);
    for _ in 0..10 {
        det.detect(&rgb, content).expect("warm-up");
    }
    let mut ms: Vec<f64> = (0..200)
        .map(|_| {
            let t = Instant::now();
            det.detect(&rgb, content).expect("detect");
            t.elapsed().as_secs_f64() * 1000.0
        })
        .collect();
    ms.sort_by(|a, b| a.total_cmp(b));
    let i = &manifest.input;
    println!(
        "{name} {} {}x{}, intra_threads={intra}: median {:.2} ms, p99 {:.2} ms, min {:.2} ms (n=200, 2 cores)",
        precision.name(),
        i.width,
        i.height,
        ms[100],
        ms[198],
        ms[0]
    );
}

/// Resident memory of this process in MiB.
fn rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

fn dual_encoder(dir: &Path, img: &image::RgbImage, intra: usize) {
    let before = rss_mib();
    let manifest = Arc::new(Manifest::load(dir).expect("manifest"));
    let prompts = PromptModel::load(&manifest).expect("model");
    let mut enc = ImageEncoder::load(Arc::clone(&manifest), intra).expect("image encoder");
    let loaded = rss_mib();
    let (rgb, _) = prepare_image(img, &manifest);
    for _ in 0..5 {
        enc.embed(&rgb).expect("warm-up");
    }
    let mut ms: Vec<f64> = (0..50)
        .map(|_| {
            let t = Instant::now();
            enc.embed(&rgb).expect("embed");
            t.elapsed().as_secs_f64() * 1000.0
        })
        .collect();
    ms.sort_by(|a, b| a.total_cmp(b));
    let PromptModel::Text(text) = &prompts else {
        panic!("not a dual encoder")
    };
    let t = Instant::now();
    for i in 0..20 {
        text.embed(&format!("a photo of thing number {i}"))
            .expect("text");
    }
    let text_ms = t.elapsed().as_secs_f64() * 1000.0 / 20.0;
    println!(
        "{}: image encoder {}x{}, intra_threads={intra}: median {:.1} ms, p98 {:.1} ms (n=50); \
         text encoder {text_ms:.1} ms per prompt; resident memory +{:.0} MiB after loading \
         (text half + one image session) (2 cores)",
        dir.display(),
        manifest.input.width,
        manifest.input.height,
        ms[25],
        ms[49],
        loaded - before
    );
}

/// Times the motion gate on a `side`×`side` frame (the models' input sizes):
/// the thumbnail and the comparison, for frames that alternate between two
/// pictures so every frame is compared and scored, then for a still one.
fn motion_gate(side: u32) {
    use sightline::domain::{Frame, Results, StreamId};
    use sightline::pool::motion::{Decision, Gate, MotionSpec};
    let frame = |shade: u8| Frame {
        stream_id: StreamId::new("bench"),
        seq: 0,
        wall: std::time::SystemTime::now(),
        arrived: Instant::now(),
        stream_secs: 0.0,
        width: side,
        height: side,
        rgb: (0..side * side * 3)
            .map(|i| (i % 251) as u8 ^ shade)
            .collect(),
        content: [0.0, 0.0, 1.0, 1.0],
        aspect: 1.0,
        models: Arc::from(vec![0usize]),
    };
    let gate = Gate::<Results>::new(&MotionSpec::default()).expect("on");
    let (a, b) = (frame(0), frame(0x55));
    let mut times = Vec::new();
    for i in 0..2000 {
        let f = if i % 2 == 0 { &a } else { &b };
        let t = Instant::now();
        if let Decision::Score(ticket) = gate.decide(f) {
            gate.scored(ticket, Arc::from(Vec::new()), false);
        }
        times.push(t.elapsed().as_secs_f64() * 1e6);
    }
    times.sort_by(|x, y| x.total_cmp(y));
    let (p50, p99) = (times[times.len() / 2], times[times.len() * 99 / 100]);
    println!(
        "motion gate {side}x{side}: p50 {p50:.1} us, p99 {p99:.1} us per frame (n={})",
        times.len()
    );
}
