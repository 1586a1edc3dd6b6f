//! Free-text events on a dual encoder: a calibrated confidence per frame and
//! a per-stream baseline.
//!
//! Raw cosine similarity is not a probability: its level depends on the
//! model, the prompt and the scene. So an event's confidence is a softmax,
//! at the model's logit scale, of the prompt against competing prompts (a
//! background set plus the event's own `negatives`): "how much more does
//! this frame look like the prompt than like the alternatives". And because
//! some cameras always look a little like a prompt (an orange-lit yard and
//! "fire"), a frame also has to lift the prompt's similarity above what is
//! usual for this stream: an exponential average of that similarity over
//! stream time. It starts from the stream's stored frames when there are
//! any (`embeddings::Embeddings::baseline`), so a rule created, or a daemon
//! restarted, while something is already in view still sees it as new; else
//! from the first frame the rule judges.

use std::sync::Arc;

use crate::domain::EventSpec;

/// Competing prompts every text event is scored against: scenes with
/// nothing in particular in them.
pub const BACKGROUND: &[&str] = &[
    "a photo",
    "a photo of an empty scene",
    "a blurry photo",
    "a photo of a room",
    "a photo of a street",
    "a photo of the ground",
];

/// A text event with its prompt embeddings (made by the text encoder, which
/// the matcher never calls itself).
#[derive(Debug, Clone)]
pub struct TextRule {
    /// The event's prompt followed by every competing prompt.
    pub texts: Vec<String>,
    /// Unit-length text embeddings, in the order of `texts`.
    pub vectors: Vec<Arc<[f32]>>,
    pub scale: f32,
    pub min_confidence: f32,
    pub min_lift: f32,
    pub baseline_secs: f64,
    /// The prompt was longer than the model's context and was cut.
    pub truncated: bool,
}

/// A stream's usual similarity to one prompt: every earlier frame's
/// similarity, held until the next frame, averaged with weights that fall
/// off exponentially with age. Holding a frame's value until the next one
/// (rather than giving the next frame the whole gap) is what makes a camera
/// that comes back after an outage compare what it shows with the scene
/// before the outage, not with itself.
#[derive(Debug, Clone, Default)]
pub struct Baseline {
    mean: Option<f32>,
    /// The latest frame's similarity, held until the next frame.
    held: f32,
    /// The latest frame's stream time.
    last: f64,
}

impl Baseline {
    /// The usual similarity up to the latest frame, not counting it (None
    /// before the first frame; that frame alone after it).
    pub fn mean(&self) -> Option<f32> {
        self.mean
    }

    /// Brings the usual level up to stream time `t` (time constant `tau`
    /// seconds), then holds `similarity`, seen at `t`, until the next frame.
    pub fn follow(&mut self, similarity: f32, t: f64, tau: f64) {
        self.mean = Some(match self.mean {
            None => similarity,
            Some(m) => {
                let keep = (-(t - self.last).max(0.0) / tau).exp() as f32;
                self.held + keep * (m - self.held)
            }
        });
        self.held = similarity;
        self.last = t;
    }
}

/// What one frame showed for one text event.
#[derive(Debug, Clone, PartialEq)]
pub struct TextVerdict {
    pub matched: bool,
    /// Softmax probability of the prompt among the competing prompts.
    pub confidence: f32,
    /// Cosine similarity of the frame and the prompt.
    pub similarity: f32,
    /// `scale * (similarity - baseline)`; 0 on a stream's first frame.
    pub lift: f32,
    /// Index in `texts` of the strongest competing prompt and its probability.
    pub rival: (usize, f32),
}

/// Why a prompt cannot be used with a dual encoder.
pub fn refuse(e: &EventSpec, why: String) -> String {
    format!("event {:?}: {why}", e.id.as_str())
}

impl TextRule {
    /// The texts an event is scored on: its prompt, then the background
    /// prompts, then its own negatives. Refuses detector-only settings and
    /// an empty prompt. The caller embeds them (see [`TextRule::new`]).
    pub fn texts(e: &EventSpec) -> Result<Vec<String>, String> {
        let detector_only = [
            (e.classes.is_some(), "classes"),
            (e.region.is_some(), "region"),
            (e.min_count != 1, "min_count"),
            (e.min_area != 0.0, "min_area"),
        ];
        if let Some((_, key)) = detector_only.iter().find(|(set, _)| *set) {
            return Err(refuse(
                e,
                format!(
                    "{key} applies to detector models; the loaded model is a dual encoder, \
                     which scores the prompt text itself"
                ),
            ));
        }
        if e.prompt.trim().is_empty() {
            return Err(refuse(e, "the prompt is empty".into()));
        }
        let mut texts = vec![e.prompt.clone()];
        texts.extend(BACKGROUND.iter().map(|s| s.to_string()));
        for n in &e.negatives {
            if !texts.contains(n) {
                texts.push(n.clone());
            }
        }
        Ok(texts)
    }

    /// A rule from the event and the embeddings of [`TextRule::texts`], in
    /// that order, at the text encoder's logit `scale`; `truncated` says the
    /// prompt was cut to the encoder's context.
    pub fn new(
        e: &EventSpec,
        texts: Vec<String>,
        vectors: Vec<Arc<[f32]>>,
        scale: f32,
        truncated: bool,
    ) -> TextRule {
        TextRule {
            texts,
            vectors,
            scale,
            min_confidence: e.min_confidence.unwrap_or(0.5),
            min_lift: e.min_lift,
            baseline_secs: e.baseline_secs,
            truncated,
        }
    }

    /// Confidence, similarity and strongest rival of one frame embedding,
    /// without the baseline.
    pub fn score(&self, embedding: &[f32]) -> (f32, f32, (usize, f32)) {
        let sims = self.similarities(embedding);
        let (confidence, rival) = softmax_first(&sims, self.scale);
        (confidence, sims[0], rival)
    }

    /// The frame's cosine similarity to each of `texts`.
    pub fn similarities(&self, embedding: &[f32]) -> Vec<f32> {
        self.vectors.iter().map(|v| dot(v, embedding)).collect()
    }

    /// Scores a frame at stream time `t` and moves the stream's baseline.
    pub fn evaluate(&self, embedding: &[f32], t: f64, baseline: &mut Baseline) -> TextVerdict {
        self.evaluate_similarities(&self.similarities(embedding), t, baseline)
    }

    /// [`evaluate`](Self::evaluate) from similarities already computed (one
    /// per entry of `texts`), as a backtest over stored frames does.
    pub fn evaluate_similarities(
        &self,
        sims: &[f32],
        t: f64,
        baseline: &mut Baseline,
    ) -> TextVerdict {
        let (confidence, rival) = softmax_first(sims, self.scale);
        let similarity = sims[0];
        baseline.follow(similarity, t, self.baseline_secs);
        let usual = baseline.mean.unwrap_or(similarity);
        let lift = self.scale * (similarity - usual);
        let lifted = self.min_lift <= 0.0 || lift >= self.min_lift;
        TextVerdict {
            matched: confidence >= self.min_confidence && lifted,
            confidence,
            similarity,
            lift,
            rival,
        }
    }

    /// A sentence for the alert: the prompt, its confidence, the strongest
    /// competing prompt and how far the frame stood above the baseline.
    pub fn explain(&self, v: &TextVerdict) -> String {
        let rival = self.texts.get(v.rival.0).map_or("", String::as_str);
        let lift = if self.min_lift > 0.0 {
            format!("; {:.1} above this stream's usual level", v.lift)
        } else {
            String::new()
        };
        format!(
            "{:?} at {:.2} (strongest competing prompt {rival:?} at {:.2}{lift})",
            self.texts[0], v.confidence, v.rival.1
        )
    }
}

/// Dot product (both sides are unit length, so this is the cosine).
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Softmax of `scale * sims`: the first entry's probability, and the index
/// and probability of the strongest other entry.
pub fn softmax_first(sims: &[f32], scale: f32) -> (f32, (usize, f32)) {
    let top = sims.iter().fold(f32::NEG_INFINITY, |m, &s| m.max(s));
    let weights: Vec<f32> = sims.iter().map(|s| (scale * (s - top)).exp()).collect();
    let total: f32 = weights.iter().sum();
    let (rival, w) = weights
        .iter()
        .enumerate()
        .skip(1)
        .fold(
            (0, 0.0f32),
            |best, (i, &w)| if w > best.1 { (i, w) } else { best },
        );
    (weights[0] / total, (rival, w / total))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unit(v: &[f32]) -> Arc<[f32]> {
        let n = dot(v, v).sqrt();
        v.iter().map(|x| x / n).collect()
    }

    fn rule(min_lift: f32) -> TextRule {
        TextRule {
            texts: vec!["red".into(), "background".into()],
            vectors: vec![unit(&[1.0, 0.0]), unit(&[0.0, 1.0])],
            scale: 100.0,
            min_confidence: 0.5,
            min_lift,
            baseline_secs: 600.0,
            truncated: false,
        }
    }

    #[test]
    fn softmax_is_a_probability_and_names_the_rival() {
        let (p, (i, q)) = softmax_first(&[0.3, 0.25, 0.28], 100.0);
        assert!(p > q && (p + q) < 1.0 && p > 0.5, "{p} {q}");
        assert_eq!(i, 2);
        let (p, _) = softmax_first(&[0.2, 0.2], 100.0);
        assert!((p - 0.5).abs() < 1e-6);
    }

    #[test]
    fn a_scene_that_always_looks_like_the_prompt_does_not_match() {
        let r = rule(2.0);
        let mut b = Baseline::default();
        // Tinted towards the prompt: confident, but that is this stream's normal.
        let tinted = unit(&[0.8, 0.6]);
        for i in 0..20 {
            let v = r.evaluate(&tinted, i as f64, &mut b);
            assert!(v.confidence > 0.9, "{v:?}");
            assert!(!v.matched, "frame {i}: {v:?}");
        }
        // The real thing rises above the baseline.
        let v = r.evaluate(&unit(&[1.0, 0.1]), 20.0, &mut b);
        assert!(v.matched && v.lift > 2.0, "{v:?}");
        // Without a baseline the tint alone matches.
        let mut b = Baseline::default();
        assert!(rule(0.0).evaluate(&tinted, 0.0, &mut b).matched);
    }

    #[test]
    fn the_baseline_follows_the_scene_over_its_time_constant() {
        let r = rule(2.0);
        let mut b = Baseline::default();
        r.evaluate(&unit(&[0.0, 1.0]), 0.0, &mut b);
        r.evaluate(&unit(&[1.0, 0.0]), 600.0, &mut b);
        // The first scene was on screen until 600 s; the second is not yet
        // part of the usual level.
        assert!(b.mean().unwrap().abs() < 1e-6);
        r.evaluate(&unit(&[1.0, 0.0]), 1200.0, &mut b);
        let m = b.mean().unwrap();
        // One time constant: 63% of the way.
        assert!((m - 0.632).abs() < 0.01, "{m}");
    }

    #[test]
    fn after_an_outage_the_scene_is_compared_with_what_was_there_before() {
        // The camera showed an empty scene, went dark for an hour, and came
        // back with the prompt's subject in view: that is new.
        let r = rule(2.0);
        let mut b = Baseline::default();
        for t in 0..600 {
            r.evaluate(&unit(&[0.2, 1.0]), f64::from(t), &mut b);
        }
        for t in [4200.0, 4200.5, 4201.0] {
            let v = r.evaluate(&unit(&[1.0, 0.3]), t, &mut b);
            assert!(v.matched, "at {t}: {v:?}");
        }
    }

    #[test]
    fn a_thing_that_stays_becomes_normal_after_tau_ln_lift_over_min_lift() {
        // FREE_TEXT.md promises this figure to operators.
        let r = rule(2.0);
        let mut b = Baseline::default();
        let empty = unit(&[0.2, 1.0]);
        for t in 0..600 {
            r.evaluate(&empty, f64::from(t), &mut b);
        }
        let stays = unit(&[1.0, 0.9]);
        let first = r.evaluate(&stays, 600.0, &mut b);
        assert!(first.matched, "{first:?}");
        let expected = 600.0 * (first.lift / 2.0).ln();
        let mut last_match = 0.0;
        for s in 1..20_000 {
            if r.evaluate(&stays, 600.0 + f64::from(s), &mut b).matched {
                last_match = f64::from(s);
            }
        }
        assert!(
            (last_match - f64::from(expected)).abs() < 2.0,
            "matched for {last_match} s, expected {expected} s (lift {})",
            first.lift
        );
    }
}
