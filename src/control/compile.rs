//! Events compiled for the loaded models: each is routed to one model
//! ([`ModelSet::route`]); a detector's events resolve their prompt to its
//! labels; a dual encoder's have their texts embedded here, by the text
//! encoder, so the matcher only ever receives finished vectors. Embedding
//! runs the encoder: call this on a blocking thread.

use crate::domain::EventSpec;
use crate::matcher::{text, CompiledEvent, LabelRule, Rule, TextRule};
use crate::model::{ModelSet, PromptModel};

/// Compiles an event, refusing prompts no loaded model can score (with why).
pub fn compile_event(e: &EventSpec, models: &ModelSet) -> Result<CompiledEvent, String> {
    let idx = models.route(e)?;
    let model = models
        .get(idx)
        .ok_or_else(|| format!("event {:?}: no model {idx}", e.id.as_str()))?;
    let rule = match &model.prompts {
        PromptModel::Labels(labels) => Rule::Labels(LabelRule::compile(
            e,
            labels,
            model.manifest.score_threshold,
        )?),
        PromptModel::Text(_) if e.objects.is_some() => {
            return Err(format!(
                "event {:?}: per, min_dwell_secs, line and stationary_secs follow tracked \
                 objects, which only a detector model gives; model {:?} is a dual encoder",
                e.id.as_str(),
                model.name.as_ref()
            ))
        }
        PromptModel::Text(encoder) => {
            let texts = TextRule::texts(e)?;
            let (vectors, truncated) = encoder
                .embed_all(&texts)
                .map_err(|why| text::refuse(e, why))?;
            Rule::Text(TextRule::new(
                e,
                texts,
                vectors,
                encoder.logit_scale(),
                truncated,
            ))
        }
    };
    Ok(CompiledEvent::new(e, rule, idx, model.name.clone()))
}
