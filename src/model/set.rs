//! Several models side by side, and which one scores an event.
//!
//! A box may load the fast person detector, an 80-class detector and a dual
//! encoder at once. Each event is scored by exactly one of them: the one it
//! names (`model = "coco"`), else the cheapest detector whose labels cover
//! its prompt (cost is the input's pixel count, which is what inference time
//! follows for these networks), else a dual encoder for free text. A prompt
//! none of them can score is refused with every model's vocabulary.

use std::sync::Arc;

use super::vocabulary::{prompt_labels, vocabulary};
use super::{Kind, Manifest, PromptModel, TextEncoder};
use crate::domain::EventSpec;

/// A model's place in its [`ModelSet`] (and in every worker's scorers).
pub type ModelIdx = usize;

/// One loaded model.
pub struct Loaded {
    pub name: Arc<str>,
    pub manifest: Arc<Manifest>,
    pub prompts: PromptModel,
}

impl Loaded {
    /// Relative inference cost: input pixels.
    fn cost(&self) -> u64 {
        u64::from(self.manifest.input.width) * u64::from(self.manifest.input.height)
    }

    /// Whether this detector can score the event (its classes or its prompt).
    fn covers(&self, e: &EventSpec) -> bool {
        let PromptModel::Labels(labels) = &self.prompts else {
            return false;
        };
        if !e.negatives.is_empty() {
            return false; // negatives are for dual encoders
        }
        match &e.classes {
            Some(cl) => cl
                .iter()
                .all(|c| labels.iter().any(|l| l.eq_ignore_ascii_case(c))),
            None => !prompt_labels(&e.prompt, labels).is_empty(),
        }
    }
}

/// The loaded models; the first is the primary (what a stream without
/// events runs).
pub struct ModelSet {
    models: Vec<Loaded>,
}

impl ModelSet {
    /// A set of models with distinct names (at least one).
    pub fn new(models: Vec<Loaded>) -> Result<ModelSet, String> {
        if models.is_empty() {
            return Err("no model is configured".into());
        }
        for (i, m) in models.iter().enumerate() {
            if models[..i].iter().any(|o| o.name == m.name) {
                return Err(format!(
                    "two models are called {:?}: names must be unique",
                    m.name
                ));
            }
        }
        Ok(ModelSet { models })
    }

    /// A set of one model.
    pub fn one(name: &str, manifest: Arc<Manifest>, prompts: PromptModel) -> ModelSet {
        ModelSet {
            models: vec![Loaded {
                name: Arc::from(name),
                manifest,
                prompts,
            }],
        }
    }

    pub fn all(&self) -> &[Loaded] {
        &self.models
    }

    pub fn get(&self, i: ModelIdx) -> Option<&Loaded> {
        self.models.get(i)
    }

    /// The primary model.
    pub fn primary(&self) -> &Loaded {
        &self.models[0]
    }

    pub fn by_name(&self, name: &str) -> Option<ModelIdx> {
        self.models.iter().position(|m| &*m.name == name)
    }

    /// The first dual encoder, for free-text search.
    pub fn text(&self) -> Option<(ModelIdx, &Arc<TextEncoder>)> {
        self.models
            .iter()
            .enumerate()
            .find_map(|(i, m)| match &m.prompts {
                PromptModel::Text(t) => Some((i, t)),
                PromptModel::Labels(_) => None,
            })
    }

    /// Every label any loaded detector knows, each once, in model order.
    pub fn labels(&self) -> Vec<Arc<str>> {
        let mut out: Vec<Arc<str>> = Vec::new();
        for m in &self.models {
            for l in &m.manifest.labels_shared {
                if !out.contains(l) {
                    out.push(l.clone());
                }
            }
        }
        out
    }

    /// The model that scores an event, or why none can.
    pub fn route(&self, e: &EventSpec) -> Result<ModelIdx, String> {
        if let Some(name) = &e.model {
            return self.by_name(name).ok_or_else(|| {
                format!(
                    "event {:?}: model {name:?} is not loaded; the loaded models are {}",
                    e.id.as_str(),
                    self.names()
                )
            });
        }
        if self.models.len() == 1 {
            // Its own compile step gives the precise refusal.
            return Ok(0);
        }
        let mut detectors: Vec<(ModelIdx, &Loaded)> = self
            .models
            .iter()
            .enumerate()
            .filter(|(_, m)| m.manifest.kind != Kind::DualEncoder)
            .collect();
        detectors.sort_by_key(|(i, m)| (m.cost(), *i));
        if let Some((i, _)) = detectors.iter().find(|(_, m)| m.covers(e)) {
            return Ok(*i);
        }
        if let Some((i, _)) = self.text() {
            return Ok(i);
        }
        Err(format!(
            "event {:?}: the prompt {:?} names nothing the loaded models can detect; {}",
            e.id.as_str(),
            e.prompt,
            self.vocabularies()
        ))
    }

    /// `model "a" (…): the model detects: …; model "b" …`.
    pub fn vocabularies(&self) -> String {
        let each: Vec<String> = self
            .models
            .iter()
            .map(|m| match &m.prompts {
                PromptModel::Labels(l) => format!("model {:?}: {}", m.name, vocabulary(l)),
                PromptModel::Text(_) => format!("model {:?}: any text (a dual encoder)", m.name),
            })
            .collect();
        each.join("; ")
    }

    fn names(&self) -> String {
        let n: Vec<String> = self
            .models
            .iter()
            .map(|m| format!("{:?}", m.name))
            .collect();
        n.join(", ")
    }
}
