//! Models: manifests, ONNX Runtime sessions, detector decoding and the
//! dual encoders (CLIP-style) behind free-text events.
//!
//! ONNX Runtime is loaded from a shared library at run time (`load-dynamic`),
//! never downloaded. Each inference worker owns one [`Detector`] (one
//! `ort::Session`), because `Session::run` needs `&mut self`. No `ort` type
//! leaves this module: callers see frames in and [`Detection`]s out.

pub mod clip;
pub mod decode;
pub mod manifest;
pub mod provider;
pub mod set;
pub mod text;
pub mod tokenizer;
pub mod vocabulary;

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use ort::session::Session;
use ort::value::TensorRef;

use crate::domain::Detection;
pub use clip::{ImageEncoder, PromptModel};
pub use decode::Content;
pub use manifest::{Dtype, Input, Kind, Layout, Manifest, Resize};
pub use provider::Placement;
pub use set::{Loaded, ModelIdx, ModelSet};
pub use text::{EmbeddingMemory, TextEncoder};

/// Scores below this never leave the model (events set their own, higher, thresholds).
pub const FLOOR_SCORE: f32 = 0.2;

/// Everything that can go wrong loading or running a model.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("ONNX Runtime library not usable: {0}")]
    Runtime(String),
    #[error("model manifest {path}: {message}")]
    Manifest { path: PathBuf, message: String },
    #[error("model {name:?} not found; looked in: {searched}")]
    NotFound { name: String, searched: String },
    #[error("model file {path}: {message}")]
    Load { path: PathBuf, message: String },
    #[error("model {path}: inference failed: {message}")]
    Run { path: PathBuf, message: String },
}

/// The ONNX Runtime shared library that setup installs.
pub const ORT_LIB_NAME: &str = "libonnxruntime.so.1.31.1";

/// Where to look for ONNX Runtime: the config's path, then `ORT_DYLIB_PATH`,
/// then the places `scripts/setup` installs it.
pub fn ort_library_candidates(configured: Option<&Path>) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Some(p) = configured {
        out.push(p.to_path_buf());
    }
    if let Some(p) = std::env::var_os("ORT_DYLIB_PATH") {
        out.push(PathBuf::from(p));
    }
    // The Debian package's, then where scripts/setup puts it.
    out.push(Path::new("/usr/lib/sightline").join(ORT_LIB_NAME));
    out.push(Path::new("/usr/local/lib/sightline").join(ORT_LIB_NAME));
    if let Some(home) = std::env::var_os("HOME") {
        out.push(
            Path::new(&home)
                .join(".cache/sightline/ort")
                .join(ORT_LIB_NAME),
        );
    }
    out
}

static ENV: OnceLock<Result<ort::environment::Environment, String>> = OnceLock::new();

/// Prepacked weights shared by every session of the same model file, so a
/// second worker does not hold a second copy of the repacked convolutions.
fn shared_weights(path: &Path) -> ort::session::builder::PrepackedWeights {
    static SHARED: OnceLock<
        std::sync::Mutex<
            std::collections::HashMap<PathBuf, ort::session::builder::PrepackedWeights>,
        >,
    > = OnceLock::new();
    let map = SHARED.get_or_init(Default::default);
    let mut map = map.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    map.entry(path.to_path_buf())
        .or_insert_with(ort::session::builder::PrepackedWeights::new)
        .clone()
}

/// The ONNX Runtime library this process loaded, once it has.
pub fn runtime_library() -> Option<PathBuf> {
    provider::LIBRARY.get().cloned()
}

/// Loads ONNX Runtime once per process. Later calls return the first result.
pub fn init_runtime(
    configured: Option<&Path>,
) -> Result<ort::environment::Environment, ModelError> {
    ENV.get_or_init(|| {
        let candidates = ort_library_candidates(configured);
        let path = candidates.iter().find(|p| p.is_file()).ok_or_else(|| {
            let list: Vec<String> = candidates.iter().map(|p| p.display().to_string()).collect();
            format!(
                "{ORT_LIB_NAME} not found (tried {}); run scripts/setup or set runtime.ort_library",
                list.join(", ")
            )
        })?;
        let builder = ort::init_from(path).map_err(|e| e.to_string())?;
        let _ = provider::LIBRARY.set(path.clone());
        builder
            .with_name("sightline")
            .build()
            .map_err(|e| format!("{}: {e}", path.display()))
    })
    .clone()
    .map_err(ModelError::Runtime)
}

/// Folders searched for a model given by name: `SIGHTLINE_MODELS`, `./models`,
/// the package's `/usr/share/sightline/models`,
/// `/usr/local/share/sightline/models`, and last the source tree's
/// `models/` (for `cargo run` from elsewhere; never before an installed one).
pub fn model_dirs() -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    if let Some(p) = std::env::var_os("SIGHTLINE_MODELS") {
        dirs.push(PathBuf::from(p));
    }
    dirs.push(PathBuf::from("models"));
    dirs.push(PathBuf::from("/usr/share/sightline/models"));
    dirs.push(PathBuf::from("/usr/local/share/sightline/models"));
    dirs.push(Path::new(env!("CARGO_MANIFEST_DIR")).join("models"));
    dirs
}

/// Resolves `[model] path`: a folder with `model.toml`, or a name under [`model_dirs`].
pub fn resolve_model_dir(spec: &str) -> Result<PathBuf, ModelError> {
    let direct = PathBuf::from(spec);
    if direct.join("model.toml").is_file() {
        return Ok(direct);
    }
    let dirs = model_dirs();
    for d in &dirs {
        let p = d.join(spec);
        if p.join("model.toml").is_file() {
            return Ok(p);
        }
    }
    let searched: Vec<String> = std::iter::once(direct)
        .chain(dirs.iter().map(|d| d.join(spec)))
        .map(|p| p.display().to_string())
        .collect();
    Err(ModelError::NotFound {
        name: spec.to_string(),
        searched: searched.join(", "),
    })
}

/// Opens one ONNX session for an inference thread.
pub(crate) fn open_session(
    path: &Path,
    intra_threads: usize,
    placement: Placement,
) -> Result<Session, ModelError> {
    let env = init_runtime(None)?;
    let load_err = |message: String| ModelError::Load {
        path: path.to_path_buf(),
        message,
    };
    if !path.is_file() {
        return Err(load_err("file does not exist".into()));
    }
    let builder = Session::builder(&env)
        .map_err(|e| load_err(format!("ONNX Runtime cannot start a session: {e}")))?;
    let builder = provider::place(builder, placement, path)?;
    Ok(builder)
        .and_then(|b| b.with_intra_threads(intra_threads).map_err(Into::into))
        .and_then(|b| b.with_inter_threads(1).map_err(Into::into))
        // Shared prepacked weights avoid a copy per worker. Idle intra-op
        // threads sleep instead of spinning: the decoders need those
        // cycles. The CPU arena stays on: without it inference was ~20%
        // slower here (docs/PERFORMANCE.md).
        .and_then(|b| b.with_intra_op_spinning(false).map_err(Into::into))
        .and_then(|b| {
            b.with_prepacked_weights(&shared_weights(path))
                .map_err(Into::into)
        })
        .and_then(|mut b| b.commit_from_file(path))
        .map_err(|e| load_err(format!("ONNX Runtime cannot load it: {e}")))
}

/// One ONNX session plus the manifest that says how to use it. Owned by
/// exactly one worker thread.
pub struct Detector {
    session: Session,
    manifest: Arc<Manifest>,
    scratch: Vec<f32>,
}

impl Detector {
    /// Opens the model's ONNX file and checks it against the manifest.
    pub fn load(manifest: Arc<Manifest>, intra_threads: usize) -> Result<Detector, ModelError> {
        let path = manifest.onnx_path();
        let load_err = |message: String| ModelError::Load {
            path: path.clone(),
            message,
        };
        let session = open_session(&path, intra_threads, manifest.placement)?;
        let input = session
            .inputs()
            .iter()
            .find(|i| i.name() == manifest.input.name)
            .ok_or_else(|| {
                let names: Vec<&str> = session.inputs().iter().map(|i| i.name()).collect();
                load_err(format!(
                    "no input {:?}; the model has {names:?}",
                    manifest.input.name
                ))
            })?;
        let want = match manifest.input.dtype {
            Dtype::Uint8 => ort::value::TensorElementType::Uint8,
            Dtype::Float32 => ort::value::TensorElementType::Float32,
        };
        if input.dtype().tensor_type() != Some(want) {
            return Err(load_err(format!(
                "input {:?} is {:?}, manifest says {:?}",
                manifest.input.name,
                input.dtype(),
                manifest.input.dtype
            )));
        }
        let o = &manifest.outputs;
        for name in [
            &o.boxes,
            &o.scores,
            &o.classes,
            &o.count,
            &o.output,
            &o.detections,
        ]
        .into_iter()
        .flatten()
        {
            if !session.outputs().iter().any(|x| x.name() == name) {
                let names: Vec<&str> = session.outputs().iter().map(|x| x.name()).collect();
                return Err(load_err(format!(
                    "no output {name:?}; the model has {names:?}"
                )));
            }
        }
        Ok(Detector {
            session,
            manifest,
            scratch: Vec::new(),
        })
    }

    /// The manifest this detector was loaded with.
    pub fn manifest(&self) -> &Arc<Manifest> {
        &self.manifest
    }

    /// Runs the model on one RGB image of the manifest's input size.
    pub fn detect(&mut self, rgb: &[u8], content: Content) -> Result<Vec<Detection>, ModelError> {
        let m = Arc::clone(&self.manifest);
        let (w, h) = (m.input.width as usize, m.input.height as usize);
        let path = m.onnx_path();
        let run_err = |message: String| ModelError::Run {
            path: path.clone(),
            message,
        };
        if rgb.len() != w * h * 3 {
            return Err(run_err(format!(
                "frame has {} bytes, expected {w}x{h} RGB",
                rgb.len()
            )));
        }
        let outputs = match (m.input.dtype, m.input.layout) {
            (Dtype::Uint8, Layout::Nhwc) => {
                let view = ndarray::ArrayView4::from_shape((1, h, w, 3), rgb)
                    .map_err(|e| run_err(e.to_string()))?;
                let t = TensorRef::from_array_view(view).map_err(|e| run_err(e.to_string()))?;
                self.session.run(ort::inputs![m.input.name.as_str() => t])
            }
            (Dtype::Float32, layout) => {
                fill_float(&mut self.scratch, rgb, w, h, &m.input);
                let shape = match layout {
                    Layout::Nchw => (1, 3, h, w),
                    Layout::Nhwc => (1, h, w, 3),
                };
                let view = ndarray::ArrayView4::from_shape(shape, &self.scratch)
                    .map_err(|e| run_err(e.to_string()))?;
                let t = TensorRef::from_array_view(view).map_err(|e| run_err(e.to_string()))?;
                self.session.run(ort::inputs![m.input.name.as_str() => t])
            }
            (Dtype::Uint8, Layout::Nchw) => {
                return Err(run_err("uint8 NCHW input is not supported".into()))
            }
        }
        .map_err(|e| run_err(e.to_string()))?;

        decode_outputs(&m, &outputs, content).map_err(run_err)
    }
}

/// Reads a detector's outputs in place (no copy per frame) into detections.
fn decode_outputs(
    m: &Manifest,
    outputs: &ort::session::SessionOutputs<'_>,
    content: Content,
) -> Result<Vec<Detection>, String> {
    let (w, h) = (m.input.width as usize, m.input.height as usize);
    let tensor = |name: &Option<String>| {
        let name = name.as_deref().unwrap_or_default();
        let v = outputs
            .get(name)
            .ok_or_else(|| format!("output {name:?} missing"))?;
        v.try_extract_tensor::<f32>()
            .map_err(|e| format!("output {name:?}: {e}"))
    };
    match m.kind {
        Kind::Ssd => {
            let count = match &m.outputs.count {
                Some(_) => tensor(&m.outputs.count)?
                    .1
                    .first()
                    .map(|c| c.max(0.0) as usize),
                None => None,
            };
            Ok(decode::ssd(
                tensor(&m.outputs.boxes)?.1,
                tensor(&m.outputs.scores)?.1,
                tensor(&m.outputs.classes)?.1,
                count,
                FLOOR_SCORE,
                content,
                |c| m.label(c).cloned(),
            ))
        }
        Kind::DualEncoder => Err("a dual encoder gives embeddings, not detections".into()),
        Kind::Detections => {
            let spec = m.detections.as_ref().ok_or("no [detections] section")?;
            let p = decode::Decoded {
                coordinates: spec.coordinates,
                input_w: w as f32,
                input_h: h as f32,
                min_score: FLOOR_SCORE,
                iou: spec.iou,
                max_boxes: spec.max_boxes,
            };
            let (_, rows) = tensor(&m.outputs.detections)?;
            Ok(decode::decoded(rows, p, content, |c| m.label(c).cloned()))
        }
        Kind::Yolo => {
            let (shape, data) = tensor(&m.outputs.output)?;
            let version = m.yolo.as_ref().map_or(8, |y| y.version);
            let layout = decode::YoloLayout::from_shape(version, shape, m.labels.len())?;
            Ok(decode::yolo(
                data,
                layout,
                w as f32,
                h as f32,
                FLOOR_SCORE,
                m.yolo.as_ref().map_or(0.45, |y| y.iou),
                content,
                &m.labels_shared,
            ))
        }
    }
}

/// Packed RGB bytes to the float input: `(p * scale - mean) / std` per channel.
pub(crate) fn fill_float(out: &mut Vec<f32>, rgb: &[u8], w: usize, h: usize, input: &Input) {
    let mean = input.mean.unwrap_or([0.0; 3]);
    let std = input.std.unwrap_or([1.0; 3]);
    let a: [f32; 3] = std::array::from_fn(|c| input.scale / std[c]);
    let b: [f32; 3] = std::array::from_fn(|c| -mean[c] / std[c]);
    out.clear();
    out.resize(w * h * 3, 0.0);
    match input.layout {
        Layout::Nhwc => {
            for (i, (o, &p)) in out.iter_mut().zip(rgb).enumerate() {
                *o = p as f32 * a[i % 3] + b[i % 3];
            }
        }
        Layout::Nchw => {
            let plane = w * h;
            for (i, px) in rgb.chunks_exact(3).enumerate() {
                for c in 0..3 {
                    out[c * plane + i] = px[c] as f32 * a[c] + b[c];
                }
            }
        }
    }
}

/// Fits a decoded picture to the model's input the way the pipeline would:
/// returns packed RGB of the input size and where the picture sits in it.
/// Used for still images (tests, tools); live frames are scaled by GStreamer.
pub fn prepare_image(img: &image::RgbImage, m: &Manifest) -> (Vec<u8>, Content) {
    use image::imageops::{self, FilterType};
    let (w, h) = (m.input.width, m.input.height);
    match m.input.resize {
        Resize::Stretch => (
            imageops::resize(img, w, h, FilterType::Triangle).into_raw(),
            Content::FULL,
        ),
        Resize::Letterbox => {
            let s = (w as f32 / img.width() as f32).min(h as f32 / img.height() as f32);
            let (sw, sh) = (
                ((img.width() as f32 * s).round() as u32).clamp(1, w),
                ((img.height() as f32 * s).round() as u32).clamp(1, h),
            );
            let scaled = imageops::resize(img, sw, sh, FilterType::Triangle);
            let mut canvas = image::RgbImage::new(w, h);
            let (ox, oy) = ((w - sw) / 2, (h - sh) / 2);
            imageops::replace(&mut canvas, &scaled, ox as i64, oy as i64);
            let content = Content([
                ox as f32 / w as f32,
                oy as f32 / h as f32,
                (ox + sw) as f32 / w as f32,
                (oy + sh) as f32 / h as f32,
            ]);
            (canvas.into_raw(), content)
        }
        Resize::Crop => {
            // Shorter side to the input size, then the centre cut out.
            let s = (w as f32 / img.width() as f32).max(h as f32 / img.height() as f32);
            let (sw, sh) = (
                ((img.width() as f32 * s).round() as u32).max(w),
                ((img.height() as f32 * s).round() as u32).max(h),
            );
            let scaled = imageops::resize(img, sw, sh, FilterType::Triangle);
            let centre = imageops::crop_imm(&scaled, (sw - w) / 2, (sh - h) / 2, w, h);
            (centre.to_image().into_raw(), Content::FULL)
        }
    }
}
