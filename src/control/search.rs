//! Text search and backtesting over a stream's stored frame embeddings
//! (dual-encoder models only). Both embed their prompts with the loaded
//! text encoder and then scan the stream's frames on a blocking thread.

use std::sync::Arc;

use super::compile_event;
use super::{problems, Engine, Refusal};
use crate::config::{self, RawEvent};
use crate::domain::FrameEmbedding;
use crate::matcher::{Rule, TextRule};
use crate::scene::embeddings::{self, Hit, Replayed};

/// What a scan looked at.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Scanned {
    pub frames: usize,
    /// Unix seconds of the first and last frame scanned.
    pub first: Option<f64>,
    pub last: Option<f64>,
}

/// A text search over a stream's stored frames.
#[derive(Debug, Clone)]
pub struct Search {
    pub query: String,
    /// Competing prompts besides the background set.
    pub negatives: Option<Vec<String>>,
    /// Lowest calibrated score of a frame that counts (0..1).
    pub threshold: f32,
    /// Most ranges returned.
    pub limit: usize,
    /// Unix ms range of the frames scanned.
    pub window: (i64, i64),
}

/// A backtest: an existing event by id, or an event's definition, over the
/// frames of a Unix ms range.
#[derive(Debug, Clone)]
pub enum Backtest {
    Event {
        id: String,
        window: (i64, i64),
    },
    Definition {
        spec: Box<RawEvent>,
        window: (i64, i64),
    },
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
    pub async fn search(&self, stream: &str, q: Search) -> Result<(Vec<Hit>, Scanned), Refusal> {
        self.text_model()?;
        self.require_stream(stream).await?;
        let (threshold, limit, (from, to)) = (q.threshold, q.limit, q.window);
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
        q: Backtest,
    ) -> Result<(Vec<Replayed>, Scanned), Refusal> {
        self.text_model()?;
        self.require_stream(stream).await?;
        let (spec, (from, to)) = match q {
            Backtest::Event { id, window } => {
                let cat = self.catalog.lock().await;
                let row = cat
                    .events
                    .get(&id)
                    .ok_or_else(|| Refusal::NotFound(format!("no event with id {id:?}")))?;
                let mut spec: RawEvent = row.spec.clone().into();
                spec.id = Some(id.clone());
                (spec, window)
            }
            Backtest::Definition { mut spec, window } => {
                spec.id = Some("backtest".into());
                (*spec, window)
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

fn scanned(frames: &[&FrameEmbedding]) -> Scanned {
    Scanned {
        frames: frames.len(),
        first: frames.first().map(|e| e.wall_ms as f64 / 1000.0),
        last: frames.last().map(|e| e.wall_ms as f64 / 1000.0),
    }
}
