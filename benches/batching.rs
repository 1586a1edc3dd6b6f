//! Does cross-stream batching pay on this CPU? Each bundled detector's ONNX
//! graph is run directly through ONNX Runtime with B frames in one call, for
//! B = 1, 2, 4, 8 and 1 or 2 intra-op threads; reported: per-call median and
//! p99, and frames per second of the one thread calling. A model whose
//! graph has a fixed batch of 1 reports that and is skipped.
//! `cargo bench --bench batching`

use std::path::Path;
use std::time::Instant;

use ort::session::Session;
use ort::value::TensorRef;

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!("batching bench: run it with `cargo bench --bench batching`");
        return;
    }
    let env = sightline::model::init_runtime(None).expect("ONNX Runtime (run scripts/setup)");
    let models = Path::new(env!("CARGO_MANIFEST_DIR")).join("models");
    // (folder, input name, side, float input)
    for (name, input, side, float) in [
        ("ssdlite-person", "image_tensor:0", 300usize, false),
        ("centernet-coco", "tower_0/images:0", 512, true),
    ] {
        for intra in [1usize, 2] {
            let mut session = Session::builder(&env)
                .and_then(|b| b.with_intra_threads(intra).map_err(Into::into))
                .and_then(|b| b.with_intra_op_spinning(false).map_err(Into::into))
                .and_then(|mut b| b.commit_from_file(models.join(name).join("model.onnx")))
                .expect("session");
            for batch in [1usize, 2, 4, 8] {
                match time(&mut session, input, side, float, batch) {
                    Ok((p50, p99)) => println!(
                        "{name} intra={intra} B={batch}: per call p50 {p50:.1} ms, p99 {p99:.1} ms; \
                         {:.1} frames/s, {:.1} ms a frame (2 cores)",
                        batch as f64 * 1000.0 / p50,
                        p50 / batch as f64
                    ),
                    Err(e) => {
                        println!("{name} intra={intra} B={batch}: does not run batched: {e}");
                        break;
                    }
                }
            }
        }
    }
}

/// Median and p99 of one call with `batch` frames, in ms (5 warm-up calls,
/// then 60).
fn time(
    session: &mut Session,
    input: &str,
    side: usize,
    float: bool,
    batch: usize,
) -> Result<(f64, f64), String> {
    let n = batch * side * side * 3;
    let bytes: Vec<u8> = (0..n).map(|i| (i % 253) as u8).collect();
    let floats: Vec<f32> = bytes.iter().map(|&b| f32::from(b)).collect();
    let shape = (batch, side, side, 3);
    let mut times = Vec::new();
    for i in 0..65 {
        let t = Instant::now();
        let r = if float {
            let v = ndarray::ArrayView4::from_shape(shape, &floats).map_err(|e| e.to_string())?;
            let v = TensorRef::from_array_view(v).map_err(|e| e.to_string())?;
            session.run(ort::inputs![input => v]).map(|_| ())
        } else {
            let v = ndarray::ArrayView4::from_shape(shape, &bytes).map_err(|e| e.to_string())?;
            let v = TensorRef::from_array_view(v).map_err(|e| e.to_string())?;
            session.run(ort::inputs![input => v]).map(|_| ())
        };
        r.map_err(|e| e.to_string())?;
        if i >= 5 {
            times.push(t.elapsed().as_secs_f64() * 1000.0);
        }
    }
    times.sort_by(|a, b| a.total_cmp(b));
    Ok((times[times.len() / 2], times[times.len() * 99 / 100]))
}
