//! Dual encoders (CLIP-style). The image half runs on the inference pool, one
//! session per worker, and turns each frame into a unit-length embedding. The
//! text half runs on the control plane when an event is created, once per
//! prompt and negative prompt; its answers are cached by text, and kept in
//! an [`EmbeddingMemory`] (the state database) so a restart does not run the
//! encoder again for prompts it has seen.
//!
//! A model folder is checked when it loads, before anything starts: both
//! files open, inputs have the declared names, element types and fixed
//! dimensions, and one probe through each half must give embeddings of the
//! manifest's size. A mismatch is refused with what is wrong.

use std::path::Path;
use std::sync::Arc;

use ort::session::Session;
use ort::value::{TensorElementType, TensorRef};

use super::manifest::{Layout, Manifest};
use super::text::TextEncoder;
use super::{fill_float, open_session, ModelError};

/// What an event prompt is checked and compiled against.
#[derive(Clone)]
pub enum PromptModel {
    /// A detector: prompts resolve to these labels.
    Labels(Vec<Arc<str>>),
    /// A dual encoder: prompts are embedded by its text encoder.
    Text(Arc<TextEncoder>),
}

impl std::fmt::Debug for PromptModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PromptModel::Labels(l) => f.debug_tuple("Labels").field(l).finish(),
            PromptModel::Text(_) => f.write_str("Text"),
        }
    }
}

impl PromptModel {
    /// For a dual encoder: loads and checks both halves (see module docs).
    pub fn load(manifest: &Arc<Manifest>) -> Result<PromptModel, ModelError> {
        let Some((_, spec)) = manifest.dual() else {
            return Ok(PromptModel::Labels(manifest.labels_shared.clone()));
        };
        let text = TextEncoder::load(manifest)?;
        let mut image = ImageEncoder::open(Arc::clone(manifest), 1)?;
        let (t, i) = (text.probe()?, image.probe()?);
        let path = manifest.dir.join("model.toml");
        let bad = |message: String| ModelError::Manifest {
            path: path.clone(),
            message,
        };
        if t != i {
            return Err(bad(format!(
                "the image encoder gives {i}-value embeddings and the text encoder \
                 {t}-value ones: both halves must come from the same model"
            )));
        }
        if t != spec.size {
            return Err(bad(format!(
                "embedding.size is {} but both encoders give {t} values",
                spec.size
            )));
        }
        Ok(PromptModel::Text(Arc::new(text)))
    }
}

pub(super) fn load_err(path: &Path) -> impl Fn(String) -> ModelError + '_ {
    move |message| ModelError::Load {
        path: path.to_path_buf(),
        message,
    }
}

pub(super) fn run_err(path: &Path) -> impl Fn(String) -> ModelError + '_ {
    move |message| ModelError::Run {
        path: path.to_path_buf(),
        message,
    }
}

/// Checks a session input's element type and its fixed dimensions (a
/// dimension of -1 is dynamic and takes anything).
pub(super) fn check_input(
    session: &Session,
    path: &Path,
    name: &str,
    ty: TensorElementType,
    dims: &[i64],
) -> Result<(), ModelError> {
    let err = load_err(path);
    let input = session
        .inputs()
        .iter()
        .find(|i| i.name() == name)
        .ok_or_else(|| {
            let names: Vec<&str> = session.inputs().iter().map(|i| i.name()).collect();
            err(format!("no input {name:?}; the model has {names:?}"))
        })?;
    if input.dtype().tensor_type() != Some(ty) {
        return Err(err(format!(
            "input {name:?} is {:?}, expected {ty:?}",
            input.dtype()
        )));
    }
    if let Some(shape) = input.dtype().tensor_shape() {
        let fits = shape.len() == dims.len()
            && shape
                .iter()
                .zip(dims)
                .all(|(&have, &want)| have < 0 || want < 0 || have == want);
        if !fits {
            return Err(err(format!(
                "input {name:?} has shape {:?}, expected {dims:?} (-1: any)",
                &shape[..]
            )));
        }
    }
    Ok(())
}

pub(super) fn check_output(session: &Session, path: &Path, name: &str) -> Result<(), ModelError> {
    if session.outputs().iter().any(|o| o.name() == name) {
        return Ok(());
    }
    let names: Vec<&str> = session.outputs().iter().map(|o| o.name()).collect();
    Err(load_err(path)(format!(
        "no output {name:?}; the model has {names:?}"
    )))
}

/// Reads a `[1, size]` embedding output and scales it to unit length.
pub(super) fn unit_embedding(
    outputs: &ort::session::SessionOutputs<'_>,
    name: &str,
    path: &Path,
) -> Result<Vec<f32>, ModelError> {
    let err = run_err(path);
    let v = outputs
        .get(name)
        .ok_or_else(|| err(format!("output {name:?} missing")))?;
    let (_, data) = v
        .try_extract_tensor::<f32>()
        .map_err(|e| err(format!("output {name:?}: {e}")))?;
    let norm = data.iter().map(|x| x * x).sum::<f32>().sqrt();
    if !norm.is_finite() || norm == 0.0 {
        return Err(err(format!(
            "output {name:?} is zero or not a number ({} values)",
            data.len()
        )));
    }
    Ok(data.iter().map(|x| x / norm).collect())
}

/// The image half: one session, owned by one pool worker.
pub struct ImageEncoder {
    session: Session,
    manifest: Arc<Manifest>,
    output: String,
    scratch: Vec<f32>,
}

impl ImageEncoder {
    /// Opens the image encoder and checks it gives embeddings of the
    /// manifest's size.
    pub fn load(manifest: Arc<Manifest>, intra_threads: usize) -> Result<ImageEncoder, ModelError> {
        let mut enc = Self::open(manifest, intra_threads)?;
        let size = enc.probe()?;
        let want = enc.manifest.embedding.map_or(0, |e| e.size);
        if size != want {
            return Err(load_err(&enc.manifest.onnx_path())(format!(
                "gives {size}-value embeddings, the manifest says {want}"
            )));
        }
        Ok(enc)
    }

    fn open(manifest: Arc<Manifest>, intra_threads: usize) -> Result<ImageEncoder, ModelError> {
        let path = manifest.onnx_path();
        let output = manifest
            .outputs
            .embedding
            .clone()
            .ok_or_else(|| load_err(&path)("the manifest names no outputs.embedding".into()))?;
        let session = open_session(&path, intra_threads, manifest.placement)?;
        let (w, h) = (manifest.input.width as i64, manifest.input.height as i64);
        let dims = match manifest.input.layout {
            Layout::Nchw => [-1, 3, h, w],
            Layout::Nhwc => [-1, h, w, 3],
        };
        check_input(
            &session,
            &path,
            &manifest.input.name,
            TensorElementType::Float32,
            &dims,
        )?;
        check_output(&session, &path, &output)?;
        Ok(ImageEncoder {
            session,
            manifest,
            output,
            scratch: Vec::new(),
        })
    }

    /// Embeds a mid-grey picture; returns the embedding's length.
    fn probe(&mut self) -> Result<usize, ModelError> {
        let (w, h) = (self.manifest.input.width, self.manifest.input.height);
        let grey = vec![128u8; (w * h * 3) as usize];
        Ok(self.embed(&grey)?.len())
    }

    /// The unit-length embedding of one RGB picture of the input size.
    pub fn embed(&mut self, rgb: &[u8]) -> Result<Vec<f32>, ModelError> {
        let m = Arc::clone(&self.manifest);
        let (w, h) = (m.input.width as usize, m.input.height as usize);
        let path = m.onnx_path();
        let err = run_err(&path);
        if rgb.len() != w * h * 3 {
            return Err(err(format!(
                "frame has {} bytes, expected {w}x{h} RGB",
                rgb.len()
            )));
        }
        fill_float(&mut self.scratch, rgb, w, h, &m.input);
        let shape = match m.input.layout {
            Layout::Nchw => (1, 3, h, w),
            Layout::Nhwc => (1, h, w, 3),
        };
        let view = ndarray::ArrayView4::from_shape(shape, &self.scratch)
            .map_err(|e| err(e.to_string()))?;
        let t = TensorRef::from_array_view(view).map_err(|e| err(e.to_string()))?;
        let outputs = self
            .session
            .run(ort::inputs![m.input.name.as_str() => t])
            .map_err(|e| err(e.to_string()))?;
        unit_embedding(&outputs, &self.output, &path)
    }
}
