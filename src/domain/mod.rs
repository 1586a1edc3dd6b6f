//! Domain types shared by every stage, with no dependency on any other
//! module of the crate but [`crate::types`]: specs of streams, events and
//! alerts, signing secrets, address ranges, retry schedules. `config/`
//! produces them; `alert/`, `matcher/`, `source/`, `embeddings` and
//! `engine/` consume them.

mod net;
mod retry;
mod secret;
mod spec;

pub use net::{embedded_v4, unmap, Cidr};
pub use retry::{mqtt_schedule, DEFAULT_SCHEDULE};
pub use secret::Secret;
pub use spec::*;
