//! Loading the configured models and compiling the configured events
//! against them (each routed to one model), as the daemon and
//! `check-config` both do.

use std::sync::Arc;

use anyhow::{anyhow, Context};

use crate::config::Config;
use crate::control::compile_event;
use crate::matcher::CompiledEvent;
use crate::model::{self, EmbeddingMemory, Kind, Loaded, Manifest, ModelSet, PromptModel};

/// The loaded models and every event compiled against them.
pub type Compiled = (Arc<ModelSet>, Vec<Arc<CompiledEvent>>);

/// Loads one configured model (for a dual encoder: both halves, checked
/// against each other).
fn load_model(
    config: &Config,
    entry: &crate::domain::ModelEntry,
    memory: Option<Arc<dyn EmbeddingMemory>>,
) -> anyhow::Result<Loaded> {
    let context = || format!("model {:?} ({})", entry.name, entry.path);
    let dir = model::resolve_model_dir(&entry.path).with_context(context)?;
    let mut manifest = Manifest::load(&dir).with_context(context)?;
    manifest.placement = entry.placement;
    manifest
        .choose_precision(entry.precision)
        .with_context(context)?;
    tracing::info!(
        model = %entry.name,
        precision = manifest.precision.name(),
        file = %manifest.onnx_path().display(),
        "model weights"
    );
    let manifest = Arc::new(manifest);
    if manifest.kind == Kind::DualEncoder {
        model::init_runtime(config.runtime.ort_library.as_deref())?;
    }
    let prompts = PromptModel::load(&manifest).with_context(context)?;
    if let (PromptModel::Text(encoder), Some(memory)) = (&prompts, memory) {
        encoder.remember_in(memory);
    }
    Ok(Loaded {
        name: Arc::from(entry.name.as_str()),
        manifest,
        prompts,
    })
}

/// Loads every configured model and compiles every event against them
/// (each routed to one model); reports every refused prompt together.
/// With a `memory`, prompt embeddings are kept there and looked up there
/// first.
pub fn compile(
    config: &Config,
    memory: Option<Arc<dyn EmbeddingMemory>>,
) -> anyhow::Result<Compiled> {
    let loaded = config
        .models
        .iter()
        .map(|m| load_model(config, m, memory.clone()))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let models = Arc::new(ModelSet::new(loaded).map_err(|e| anyhow!(e))?);
    let mut events = Vec::new();
    let mut refused = Vec::new();
    for e in &config.events {
        match compile_event(e, &models) {
            Ok(c) => events.push(Arc::new(c)),
            Err(m) => refused.push(m),
        }
    }
    if !refused.is_empty() {
        return Err(anyhow!("{}", refused.join("\n")));
    }
    Ok((models, events))
}

/// Opens every model's ONNX file the way the inference workers do and runs
/// one inference on a black frame, so a broken file is found before `run`
/// (`check-config`). The error names the model and its file.
pub fn probe(config: &Config, models: &ModelSet) -> anyhow::Result<()> {
    model::init_runtime(config.runtime.ort_library.as_deref())?;
    for m in models.all() {
        let input = &m.manifest.input;
        let black = vec![0u8; input.width as usize * input.height as usize * 3];
        let context = || {
            format!(
                "model {:?}: {} does not run",
                m.name,
                m.manifest.onnx_path().display()
            )
        };
        match m.manifest.kind {
            Kind::DualEncoder => {
                // Loading the prompt side already probed both halves.
                let mut enc = model::ImageEncoder::load(std::sync::Arc::clone(&m.manifest), 1)
                    .with_context(context)?;
                enc.embed(&black).with_context(context)?;
            }
            Kind::Ssd | Kind::Yolo | Kind::Detections => {
                let mut det = model::Detector::load(std::sync::Arc::clone(&m.manifest), 1)
                    .with_context(context)?;
                det.detect(&black, model::Content::FULL)
                    .with_context(context)?;
            }
        }
    }
    Ok(())
}
