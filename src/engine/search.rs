//! Text search and backtesting over a stream's stored frame embeddings
//! (dual-encoder models only). Both embed their prompts with the loaded
//! text encoder and then scan the stream's frames on a blocking thread.

use std::sync::Arc;

use serde::Deserialize;

use super::compile_event;
use super::{problems, Engine, Refusal};
use crate::config::{self, RawEvent};
use crate::embeddings::{self, Hit, Replayed};
use crate::matcher::{Rule, TextRule};

/// `POST rtstream/{id}/search`: the SDK's `rtstream.search` body.
#[derive(Debug, Deserialize)]
pub struct SearchQuery {
    pub query: String,
    /// Most ranges returned (default 10, at most 1000).
    pub result_threshold: Option<usize>,
    /// Lowest calibrated score of a frame that counts (default 0.5).
    pub score_threshold: Option<f32>,
    /// Competing prompts besides the background set.
    pub negatives: Option<Vec<String>>,
    /// Only frames from this Unix time on / up to this Unix time.
    pub from: Option<f64>,
    pub to: Option<f64>,
    /// Sent by the SDK; frames are searched whatever index they belong to.
    pub scene_index_id: Option<serde_json::Value>,
    pub dynamic_score_percentage: Option<serde_json::Value>,
    pub filter: Option<serde_json::Value>,
}

/// `POST rtstream/{id}/backtest`: an existing event by id, or an event's
/// definition (`event_prompt` or `prompt`, with any matching settings).
#[derive(Debug, Deserialize)]
pub struct BacktestQuery {
    pub event_id: Option<String>,
    pub event_prompt: Option<String>,
    pub from: Option<f64>,
    pub to: Option<f64>,
    #[serde(flatten)]
    pub rest: RawEvent,
}

/// What a scan looked at.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Scanned {
    pub frames: usize,
    /// Unix seconds of the first and last frame scanned.
    pub first: Option<f64>,
    pub last: Option<f64>,
}

fn window(from: Option<f64>, to: Option<f64>) -> Result<(i64, i64), Refusal> {
    let ms = |v: f64| (v * 1000.0) as i64;
    let (from, to) = (from.map_or(i64::MIN, ms), to.map_or(i64::MAX, ms));
    if from > to {
        return Err(Refusal::Invalid("from must not be after to".into()));
    }
    Ok((from, to))
}

impl Engine {
    /// The name of the loaded dual encoder, which search and backtest use.
    fn text_model(&self) -> Result<String, Refusal> {
        match self.parts.models.text() {
            Some((i, _)) => Ok(self.parts.models.all()[i].name.to_string()),
            None => Err(Refusal::Invalid(
                "search and backtest need a dual-encoder model; the loaded models are detectors"
                    .into(),
            )),
        }
    }

    async fn require_stream(&self, stream: &str) -> Result<(), Refusal> {
        if self.catalog.lock().await.streams.contains_key(stream) {
            Ok(())
        } else {
            Err(Refusal::NotFound(format!("no rtstream with id {stream:?}")))
        }
    }

    /// Compiles an event definition to a text rule on a blocking thread
    /// (the text encoder runs).
    async fn text_rule(&self, spec: RawEvent) -> Result<(TextRule, config::MatchParams), Refusal> {
        let mut cfg = config::check_event(&spec).map_err(problems)?;
        cfg.model = Some(self.text_model()?);
        let models = Arc::clone(&self.parts.models);
        let compiled = tokio::task::spawn_blocking(move || compile_event(&cfg, &models))
            .await
            .map_err(|e| Refusal::Internal(e.to_string()))?
            .map_err(Refusal::Invalid)?;
        match compiled.rule {
            Rule::Text(r) => Ok((r, compiled.matching)),
            Rule::Labels(_) => Err(Refusal::Invalid("not a text event".into())),
        }
    }

    /// Time ranges of a stream where the query matched, best first.
    pub async fn search(
        &self,
        stream: &str,
        q: SearchQuery,
    ) -> Result<(Vec<Hit>, Scanned), Refusal> {
        self.text_model()?;
        self.require_stream(stream).await?;
        let threshold = q.score_threshold.unwrap_or(0.5);
        if !(0.0..=1.0).contains(&threshold) {
            return Err(Refusal::Invalid(
                "score_threshold must be within 0..1".into(),
            ));
        }
        let limit = q.result_threshold.unwrap_or(10).clamp(1, 1000);
        let (from, to) = window(q.from, q.to)?;
        let (rule, _) = self
            .text_rule(RawEvent {
                id: Some("search".into()),
                prompt: Some(q.query),
                negatives: q.negatives,
                ..RawEvent::default()
            })
            .await?;
        let store = std::sync::Arc::clone(&self.parts.embeddings);
        let stream = stream.to_string();
        tokio::task::spawn_blocking(move || {
            store.with(&stream, from, to, |frames| {
                let mut hits = embeddings::search(frames, &rule.vectors, rule.scale, threshold);
                hits.truncate(limit);
                (hits, scanned(frames))
            })
        })
        .await
        .map_err(|e| Refusal::Internal(e.to_string()))
    }

    /// When an event would have fired on a stream's stored frames.
    pub async fn backtest(
        &self,
        stream: &str,
        q: BacktestQuery,
    ) -> Result<(Vec<Replayed>, Scanned), Refusal> {
        self.text_model()?;
        self.require_stream(stream).await?;
        let (from, to) = window(q.from, q.to)?;
        let spec = match &q.event_id {
            Some(id) => {
                let cat = self.catalog.lock().await;
                let row = cat
                    .events
                    .get(id)
                    .ok_or_else(|| Refusal::NotFound(format!("no event with id {id:?}")))?;
                let mut spec: RawEvent = row.spec.clone().into();
                spec.id = Some(id.clone());
                spec
            }
            None => {
                let mut spec = q.rest;
                spec.id = Some("backtest".into());
                if let Some(p) = q.event_prompt {
                    spec.prompt = Some(p);
                }
                spec
            }
        };
        let (rule, matching) = self.text_rule(spec).await?;
        let store = std::sync::Arc::clone(&self.parts.embeddings);
        let stream = stream.to_string();
        tokio::task::spawn_blocking(move || {
            // Frames before the window give the rule its usual level, as
            // they would have live. Backtests run on the wall clock.
            let start = store.baseline(&stream, &rule, from, from as f64 / 1000.0);
            store.with(&stream, from, to, |frames| {
                (
                    embeddings::backtest(frames, &rule, matching, start),
                    scanned(frames),
                )
            })
        })
        .await
        .map_err(|e| Refusal::Internal(e.to_string()))
    }
}

fn scanned(frames: &[&embeddings::Entry]) -> Scanned {
    Scanned {
        frames: frames.len(),
        first: frames.first().map(|e| e.wall_ms as f64 / 1000.0),
        last: frames.last().map(|e| e.wall_ms as f64 / 1000.0),
    }
}
