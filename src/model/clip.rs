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

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use ort::session::Session;
use ort::value::{TensorElementType, TensorRef};
use sha2::{Digest, Sha256};

use super::manifest::{Layout, Manifest};
use super::tokenizer::ClipTokenizer;
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

fn load_err(path: &Path) -> impl Fn(String) -> ModelError + '_ {
    move |message| ModelError::Load {
        path: path.to_path_buf(),
        message,
    }
}

fn run_err(path: &Path) -> impl Fn(String) -> ModelError + '_ {
    move |message| ModelError::Run {
        path: path.to_path_buf(),
        message,
    }
}

/// Checks a session input's element type and its fixed dimensions (a
/// dimension of -1 is dynamic and takes anything).
fn check_input(
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

fn check_output(session: &Session, path: &Path, name: &str) -> Result<(), ModelError> {
    if session.outputs().iter().any(|o| o.name() == name) {
        return Ok(());
    }
    let names: Vec<&str> = session.outputs().iter().map(|o| o.name()).collect();
    Err(load_err(path)(format!(
        "no output {name:?}; the model has {names:?}"
    )))
}

/// Reads a `[1, size]` embedding output and scales it to unit length.
fn unit_embedding(
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
        let session = open_session(&path, intra_threads)?;
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

/// Where text embeddings outlive the process. `model` tells text encoders
/// apart (see [`TextEncoder::fingerprint`]); `ids` are the token ids without
/// their padding. Failures are the memory's to report: the encoder then
/// simply runs.
pub trait EmbeddingMemory: Send + Sync {
    fn recall(&self, model: &str, ids: &[i64]) -> Option<Vec<f32>>;
    fn remember(&self, model: &str, ids: &[i64], embedding: &[f32]);
}

/// The text half, shared by the control plane; one call at a time.
pub struct TextEncoder {
    session: Mutex<Session>,
    tokenizer: ClipTokenizer,
    input: String,
    output: String,
    path: PathBuf,
    logit_scale: f32,
    cache: Mutex<HashMap<String, Arc<[f32]>>>,
    fingerprint: String,
    size: usize,
    memory: OnceLock<Arc<dyn EmbeddingMemory>>,
    runs: AtomicU64,
}

/// The text the fingerprint and the load-time check embed.
const PROBE: &str = "a photo";

impl TextEncoder {
    /// Opens the text encoder and its tokenizer.
    pub fn load(manifest: &Manifest) -> Result<TextEncoder, ModelError> {
        let Some((spec, emb)) = manifest.dual() else {
            return Err(ModelError::Manifest {
                path: manifest.dir.join("model.toml"),
                message: "not a dual encoder".into(),
            });
        };
        let path = manifest.dir.join(&spec.file);
        let tokenizer = match &spec.vocabulary {
            None => ClipTokenizer::bundled(spec.context).map_err(|m| load_err(&path)(m))?,
            Some(v) => {
                let vpath = manifest.dir.join(v);
                let file = std::fs::File::open(&vpath).map_err(|e| ModelError::Load {
                    path: vpath.clone(),
                    message: format!("cannot open the vocabulary: {e}"),
                })?;
                ClipTokenizer::from_vocabulary(std::io::BufReader::new(file), spec.context)
                    .map_err(|m| ModelError::Load {
                        path: vpath.clone(),
                        message: m,
                    })?
            }
        };
        let session = open_session(&path, 1)?;
        check_input(
            &session,
            &path,
            &spec.input,
            TensorElementType::Int64,
            &[-1, spec.context as i64],
        )?;
        check_output(&session, &path, &spec.output)?;
        let mut enc = TextEncoder {
            session: Mutex::new(session),
            tokenizer,
            input: spec.input.clone(),
            output: spec.output.clone(),
            path,
            logit_scale: emb.logit_scale,
            cache: Mutex::new(HashMap::new()),
            fingerprint: String::new(),
            size: 0,
            memory: OnceLock::new(),
            runs: AtomicU64::new(0),
        };
        // The probe's exact output depends on every weight of the encoder,
        // so its hash names this encoder for the embedding memory.
        let (ids, _) = enc.tokenizer.encode(PROBE);
        let probe = enc.run(&ids)?;
        let mut h = Sha256::new();
        for x in probe.iter() {
            h.update(x.to_le_bytes());
        }
        enc.fingerprint = h.finalize()[..12]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        enc.size = probe.len();
        Ok(enc)
    }

    fn probe(&self) -> Result<usize, ModelError> {
        Ok(self.size)
    }

    /// Names this encoder by its weights: a hash of its embedding of a fixed
    /// text. Another model, or the same file changed, gives another name.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// Keeps embeddings in `memory` from now on and looks there before
    /// running the encoder. Only the first memory given is used.
    pub fn remember_in(&self, memory: Arc<dyn EmbeddingMemory>) {
        let _ = self.memory.set(memory);
    }

    /// How many times the encoder itself has run (not counting answers from
    /// the cache or the memory).
    pub fn encoder_runs(&self) -> u64 {
        self.runs.load(Ordering::Relaxed)
    }

    /// The model's temperature: similarities are multiplied by it before softmax.
    pub fn logit_scale(&self) -> f32 {
        self.logit_scale
    }

    /// Token ids for a text, as the encoder sees them, and whether it was cut.
    pub fn tokens(&self, text: &str) -> (Vec<i64>, bool) {
        self.tokenizer.encode(text)
    }

    /// The unit-length embedding of a text, and whether the text was longer
    /// than the context and cut.
    pub fn embed(&self, text: &str) -> Result<(Arc<[f32]>, bool), ModelError> {
        let (ids, truncated) = self.tokenizer.encode(text);
        if let Some(hit) = self.cache.lock().ok().and_then(|c| c.get(text).cloned()) {
            return Ok((hit, truncated));
        }
        let key = unpadded(&ids);
        let memory = self.memory.get();
        let recalled = memory
            .and_then(|m| m.recall(&self.fingerprint, key))
            .filter(|v| v.len() == self.size);
        let v: Arc<[f32]> = match recalled {
            Some(v) => v.into(),
            None => {
                let v = self.run(&ids)?;
                if let Some(m) = memory {
                    m.remember(&self.fingerprint, key, &v);
                }
                v.into()
            }
        };
        if let Ok(mut c) = self.cache.lock() {
            // Prompts are few; the bound only stops a runaway client.
            if c.len() >= 4096 {
                c.clear();
            }
            c.insert(text.to_string(), Arc::clone(&v));
        }
        Ok((v, truncated))
    }

    /// One run of the encoder over padded token ids.
    fn run(&self, ids: &[i64]) -> Result<Vec<f32>, ModelError> {
        let err = run_err(&self.path);
        let view =
            ndarray::ArrayView2::from_shape((1, ids.len()), ids).map_err(|e| err(e.to_string()))?;
        let t = TensorRef::from_array_view(view).map_err(|e| err(e.to_string()))?;
        let mut session = self
            .session
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let outputs = session
            .run(ort::inputs![self.input.as_str() => t])
            .map_err(|e| err(e.to_string()))?;
        self.runs.fetch_add(1, Ordering::Relaxed);
        unit_embedding(&outputs, &self.output, &self.path)
    }
}

/// Token ids without the zero padding after the end token.
fn unpadded(ids: &[i64]) -> &[i64] {
    let n = ids.iter().rposition(|&i| i != 0).map_or(0, |i| i + 1);
    &ids[..n]
}
