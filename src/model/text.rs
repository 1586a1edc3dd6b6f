//! The text half of a dual encoder: prompts to unit-length embeddings. Its
//! session runs on a thread of its own behind a job channel; answers are
//! cached by text and kept in an [`EmbeddingMemory`] (the state database),
//! so a restart does not run the encoder again for prompts it has seen.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use ort::session::Session;
use ort::value::{TensorElementType, TensorRef};
use sha2::{Digest, Sha256};

use super::clip::{check_input, check_output, load_err, run_err, unit_embedding};
use super::manifest::Manifest;
use super::tokenizer::{self, ClipTokenizer};
use super::{open_session, ModelError};
pub use crate::store::EmbeddingMemory;

/// Unit-length embeddings of several texts, and whether the first was cut.
pub type Embedded = (Vec<Arc<[f32]>>, bool);

/// One run of the text encoder, with where its answer goes.
type Job = (
    Vec<i64>,
    crossbeam_channel::Sender<Result<Vec<f32>, ModelError>>,
);

/// The text half, shared by the control plane. Its ONNX session lives on a
/// thread of its own that takes one job at a time from a channel, so no
/// async thread ever holds a session lock or runs the model.
pub struct TextEncoder {
    jobs: crossbeam_channel::Sender<Job>,
    tokenizer: ClipTokenizer,
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
        // Prompts are encoded once each: the CPU is always enough.
        let session = open_session(&path, 1, Default::default())?;
        check_input(
            &session,
            &path,
            &spec.input,
            TensorElementType::Int64,
            &[-1, spec.context as i64],
        )?;
        check_output(&session, &path, &spec.output)?;
        let jobs = spawn_runner(
            session,
            spec.input.clone(),
            spec.output.clone(),
            path.clone(),
        )?;
        let mut enc = TextEncoder {
            jobs,
            tokenizer,
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

    pub(super) fn probe(&self) -> Result<usize, ModelError> {
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

    /// One run of the encoder over padded token ids, on its thread.
    fn run(&self, ids: &[i64]) -> Result<Vec<f32>, ModelError> {
        let gone = || run_err(&self.path)("the text encoder's thread has stopped".into());
        let (tx, rx) = crossbeam_channel::bounded(1);
        self.jobs.send((ids.to_vec(), tx)).map_err(|_| gone())?;
        let v = rx.recv().map_err(|_| gone())??;
        self.runs.fetch_add(1, Ordering::Relaxed);
        Ok(v)
    }

    /// Embeds an event's texts (see `matcher::TextRule::texts`), refusing
    /// texts that hold the tokenizer's markers. Returns the embeddings in
    /// order and whether the first text (the prompt) was cut.
    pub fn embed_all(&self, texts: &[String]) -> Result<Embedded, String> {
        let mut vectors = Vec::with_capacity(texts.len());
        let mut truncated = false;
        for (i, t) in texts.iter().enumerate() {
            let lower = t.to_lowercase();
            if let Some(m) = tokenizer::MARKERS.iter().find(|m| lower.contains(*m)) {
                return Err(format!("{t:?} contains the tokenizer marker {m}"));
            }
            let (v, cut) = self
                .embed(t)
                .map_err(|err| format!("cannot embed {t:?}: {err}"))?;
            truncated |= i == 0 && cut;
            vectors.push(v);
        }
        Ok((vectors, truncated))
    }
}

/// Starts the thread that owns the text session. It ends when the encoder
/// (the only sender) is dropped.
fn spawn_runner(
    mut session: Session,
    input: String,
    output: String,
    path: PathBuf,
) -> Result<crossbeam_channel::Sender<Job>, ModelError> {
    let (tx, rx) = crossbeam_channel::unbounded::<Job>();
    let at = path.clone();
    let spawned = std::thread::Builder::new()
        .name("text-encoder".into())
        .spawn(move || {
            for (ids, reply) in rx {
                let _ = reply.send(run_once(&mut session, &input, &output, &path, &ids));
            }
        });
    spawned.map_err(|e| load_err(&at)(format!("cannot start the text encoder's thread: {e}")))?;
    Ok(tx)
}

fn run_once(
    session: &mut Session,
    input: &str,
    output: &str,
    path: &Path,
    ids: &[i64],
) -> Result<Vec<f32>, ModelError> {
    let err = run_err(path);
    let view =
        ndarray::ArrayView2::from_shape((1, ids.len()), ids).map_err(|e| err(e.to_string()))?;
    let t = TensorRef::from_array_view(view).map_err(|e| err(e.to_string()))?;
    let outputs = session
        .run(ort::inputs![input => t])
        .map_err(|e| err(e.to_string()))?;
    unit_embedding(&outputs, output, path)
}

/// Token ids without the zero padding after the end token.
fn unpadded(ids: &[i64]) -> &[i64] {
    let n = ids.iter().rposition(|&i| i != 0).map_or(0, |i| i + 1);
    &ids[..n]
}
