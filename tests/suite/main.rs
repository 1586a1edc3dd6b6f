//! The integration tests, in one binary with a module per topic: one link
//! instead of one per file, and the two test threads stay busy across
//! topics instead of idling beside the longest test of each file. Shared
//! fixtures are in `tests/common/`. `tests/chaos.rs` stays a binary of its
//! own: it counts its process's file descriptors and threads.

#[path = "../common/mod.rs"]
mod common;

mod api;
mod bad_input;
mod bench_cli;
mod broker_restart;
mod budget;
mod cli_client;
mod cli_conventions;
mod clock_steps;
mod connections;
mod console;
mod crash;
mod demo;
mod dual_encoder;
mod end_to_end;
mod evidence;
mod fleet;
mod free_text;
mod homeassistant;
mod integrity;
mod layering;
mod limits;
mod metrics;
mod models;
mod motion;
mod mqtt_availability;
mod mqtt_secure;
mod openapi;
mod outbox_model;
mod precision;
mod sdk;
mod seams;
mod search;
mod soak;
mod sources;
mod ssrf;
mod state_disk_full;
mod tokenizer;
mod tracking;
mod vocabulary;
mod webhook_receiver;
mod websocket;
mod wiring;
