//! sightline: an edge video-analytics daemon. Camera streams come in through
//! GStreamer, sampled frames are scored by ONNX models on a bounded worker
//! pool, per-(stream, event) state machines turn scores into occurrences, and
//! alerts go out over MQTT, webhooks and WebSocket.
//!
//! The modules are declared in the order data flows through them, then the
//! planes around that flow. No module names one declared in a group below
//! its own, except `app` (which wires everything) and `tools`; the
//! `layering` test reads the `crate::` paths and fails on a cycle.

#![warn(clippy::too_many_lines)]

// Pipeline, in the order a frame travels: camera → (sampled, gated) frame →
// model scores → occurrences, with evidence recorded and scenes indexed.
pub mod matcher;
pub mod model;
pub mod pool;
pub mod record;
pub mod scene;
pub mod source;

// Delivery: occurrences become alerts on MQTT, webhooks and WebSocket, and
// Home Assistant's view of them.
pub mod alert;
pub mod homeassistant;

// Control plane: the catalog of streams, events, alerts and indexes, and how
// a change to it reaches the running stages.
pub mod control;

// A site of boxes as one: the catalog, camera placement and status shared
// over NATS JetStream, plugged into the control plane's `Site` seam.
pub mod fleet;

// The HTTP API and the console, which reach the rest through the control plane.
pub mod api;

// Wiring: builds the stages, runs and supervises them, shuts them down.
pub mod app;

// Infrastructure every layer may use: plain values and specs, the SQLite
// store, configuration, clocks, metrics and logging.
pub mod clock;
pub mod config;
pub mod domain;
pub mod metrics;
pub mod store;

// Tools the daemon never runs: the CLI client, bench, demo, doctor and the
// stand-in RTSP camera.
pub mod tools;
