//! Programs built from the library that the daemon itself never runs: the
//! CLI's API client, `sightline bench`, the demo, `sightline doctor` and the
//! stand-in RTSP camera (`sightline serve`). `main.rs` dispatches to them.

pub mod bench;
pub mod client;
pub mod demo;
pub mod doctor;
pub mod nats;
pub mod rtsp_server;
pub mod webhooks;
