//! One detector, one thread, one frame size: how long `detect` takes.
//! `cargo bench --bench inference` (SIGHTLINE_BENCH_INTRA sets intra-op threads).

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use sightline::model::{prepare_image, Detector, Manifest};

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!("inference bench: run it with `cargo bench --bench inference`");
        return;
    }
    let intra: usize = std::env::var("SIGHTLINE_BENCH_INTRA")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/ssdlite-person");
    let manifest = Arc::new(Manifest::load(&dir).expect("manifest"));
    sightline::model::init_runtime(None).expect("ONNX Runtime (run scripts/setup)");
    let mut det = Detector::load(Arc::clone(&manifest), intra).expect("model");
    // A real picture: the first frame of the demo clip's person segment is
    // not at hand here, so use a synthetic gradient of the input size.
    let img = image::RgbImage::from_fn(640, 480, |x, y| {
        image::Rgb([(x % 256) as u8, (y % 256) as u8, 128])
    });
    let (rgb, content) = prepare_image(&img, &manifest);
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
    println!(
        "ssdlite-person 300x300, intra_threads={intra}: median {:.2} ms, p99 {:.2} ms, min {:.2} ms (n=200, 2 cores)",
        ms[100], ms[198], ms[0]
    );
}
