//! Retry schedules: the wait before each delivery attempt. Its length is the
//! number of attempts; after the last one a message becomes a dead letter.

use std::sync::Arc;
use std::time::Duration;

/// The default webhook schedule: quick at first, then hours apart, about a
/// day in total.
pub const DEFAULT_SCHEDULE: &[Duration] = &[
    Duration::from_secs(0),
    Duration::from_secs(5),
    Duration::from_secs(5 * 60),
    Duration::from_secs(30 * 60),
    Duration::from_secs(2 * 3600),
    Duration::from_secs(5 * 3600),
    Duration::from_secs(10 * 3600),
    Duration::from_secs(10 * 3600),
];

/// MQTT retries: quick at first, then every 30 s for a day (a broker
/// restart or a short network cut should cost seconds, not minutes).
pub fn mqtt_schedule() -> Arc<[Duration]> {
    [0, 1, 2, 5, 10]
        .into_iter()
        .chain(std::iter::repeat_n(30, 2880))
        .map(Duration::from_secs)
        .collect()
}
