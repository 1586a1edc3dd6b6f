//! The tracker's cost per sampled frame with 20 objects in view: people
//! walking straight lines at different speeds, a few boxes scored low, and a
//! few missed each frame, as a busy scene gives. `cargo bench --bench tracking`.

use std::sync::Arc;
use std::time::Instant;

use sightline::domain::Detection;
use sightline::matcher::track::{TrackParams, Tracks};

const OBJECTS: usize = 20;
const FRAMES: usize = 20_000;

/// A small deterministic generator, so every run sees the same scene.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> f32 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 40) as f32 / (1u64 << 24) as f32
    }
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!("tracking bench: run it with `cargo bench --bench tracking`");
        return;
    }
    let mut rng = Lcg(7);
    let label: Arc<str> = Arc::from("person");
    // Start points and speeds (per sampled frame) of each walker.
    let walkers: Vec<[f32; 4]> = (0..OBJECTS)
        .map(|_| {
            [
                rng.next() * 0.9,
                rng.next() * 0.7,
                rng.next() * 0.02 - 0.01,
                rng.next() * 0.01 - 0.005,
            ]
        })
        .collect();
    let mut tracks = Tracks::new(TrackParams::default());
    let mut times = Vec::with_capacity(FRAMES);
    let mut dets = Vec::with_capacity(OBJECTS);
    for f in 0..FRAMES {
        dets.clear();
        for w in &walkers {
            // Walk, bouncing inside the picture.
            let wrap = |p: f32, span: f32| {
                let p = p.rem_euclid(2.0 * span);
                if p > span {
                    2.0 * span - p
                } else {
                    p
                }
            };
            let (x, y) = (
                wrap(w[0] + w[2] * f as f32, 0.9),
                wrap(w[1] + w[3] * f as f32, 0.7),
            );
            let r = rng.next();
            if r < 0.05 {
                continue; // missed this frame
            }
            let score = if r < 0.15 { 0.3 } else { 0.8 };
            dets.push(Detection {
                label: Arc::clone(&label),
                score,
                bbox: [x, y, x + 0.08, y + 0.25],
            });
        }
        let t0 = Instant::now();
        let owners = tracks.update(f as f64 * 0.5, &dets);
        times.push(t0.elapsed().as_secs_f64() * 1e6);
        std::hint::black_box(owners);
    }
    times.sort_by(f64::total_cmp);
    let q = |p: f64| times[((times.len() - 1) as f64 * p).round() as usize];
    println!(
        "tracker, {OBJECTS} objects, {FRAMES} frames: median {:.1} µs, p99 {:.1} µs, max {:.1} µs per frame; {} tracks alive at the end",
        q(0.5),
        q(0.99),
        q(1.0),
        tracks.live().len()
    );
}
