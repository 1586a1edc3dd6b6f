//! Events compiled for the loaded model: a detector's events resolve their
//! prompt to labels; a dual encoder's have their texts embedded here, by
//! the text encoder, so the matcher only ever receives finished vectors.
//! Embedding runs the encoder: call this on a blocking thread.

use crate::domain::EventSpec;
use crate::matcher::{text, CompiledEvent, LabelRule, Rule, TextRule};
use crate::model::PromptModel;

/// Compiles an event, refusing prompts the model cannot score (with why).
pub fn compile_event(e: &EventSpec, model: &PromptModel) -> Result<CompiledEvent, String> {
    let rule = match model {
        PromptModel::Labels(labels) => Rule::Labels(LabelRule::compile(e, labels)?),
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
    Ok(CompiledEvent::new(e, rule))
}
