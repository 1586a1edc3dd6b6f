//! sightline: an edge video-analytics daemon. Camera streams come in through
//! GStreamer, sampled frames are scored by ONNX models on a bounded worker
//! pool, per-(stream, event) state machines turn scores into occurrences, and
//! alerts go out over MQTT and webhooks.
//!
//! Data flows one way: [`source`] → [`pool`] (with [`model`], gated by
//! [`motion`]) → [`matcher`] → [`alert`]. [`app`] wires the stages; [`demo`] runs them on bundled media.

pub mod alert;
pub mod api;
pub mod app;
pub mod bench;
pub mod client;
pub mod clock;
pub mod config;
pub mod demo;
pub mod doctor;
pub mod domain;
pub mod embeddings;
pub mod engine;
pub mod index;
pub mod matcher;
pub mod metrics;
pub mod model;
pub mod motion;
pub mod pool;
pub mod record;
pub mod rtsp_server;
pub mod sampler;
pub mod scenes;
pub mod source;
pub mod store;
pub mod telemetry;
pub mod types;
