//! Scenes: what the cameras saw, kept so it can be searched. The scene stage
//! ([`stage`]) turns the matcher's observed frames into per-index summaries
//! ([`index`]) and, for dual encoders, keeps each frame's image embedding
//! ([`embeddings`]) for text search and backtesting. The SQL for both lives
//! in `store/`; the API's search and backtest requests are planned by the
//! control plane, which calls the pure scans here.

pub mod embeddings;
pub mod index;
pub mod stage;

pub use stage::{store_embeddings, store_records, EmbeddingSender, SceneStage, TimeBases};
