//! The plain values every layer shares, with no dependency on any other
//! module of the crate: the id newtypes and what flows between the stages
//! (frames, detections, scores, pictures, frame embeddings), and the specs
//! of streams, events and alerts with signing secrets, address ranges and
//! retry schedules. `config/` and the control plane produce the specs; the
//! stages consume them. Nothing here does IO or holds a lock.

mod net;
mod retry;
mod secret;
mod spec;
mod values;

pub use net::{embedded_v4, unmap, Cidr};
pub use retry::{mqtt_schedule, DEFAULT_SCHEDULE};
pub use secret::Secret;
pub use spec::*;
pub use values::*;
