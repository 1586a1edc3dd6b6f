//! Stopping streams is bounded by the grace period, under simulated clocks:
//! the 5 s grace is shown by moving the clock, not by waiting for it.

use std::time::{Duration, SystemTime};

use super::apply::{stop_handles, STOP_GRACE};
use crate::clock::simulated;
use crate::domain::StreamId;
use crate::source::{Running, StreamHandle};

fn wedged(id: &str, hold: Duration) -> Box<dyn Running> {
    Box::new(StreamHandle::wedged(StreamId::new(id), hold))
}

#[tokio::test]
async fn a_wedged_pipeline_does_not_hold_up_stopping() {
    let (sim, clocks) = simulated(SystemTime::UNIX_EPOCH);
    let stopping = tokio::spawn(async move {
        stop_handles(
            vec![
                wedged("wedged", Duration::from_secs(600)),
                wedged("prompt", Duration::ZERO),
            ],
            &clocks,
        )
        .await
    });
    // The grace sleep is waiting; just short of it, the stop still waits.
    sim.settled(1).await;
    sim.advance(STOP_GRACE - Duration::from_millis(1));
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(
        !stopping.is_finished(),
        "gave up on the wedged pipeline early"
    );
    // At the grace period it gives up on the wedged one (600 s to go).
    sim.advance(Duration::from_millis(1));
    tokio::time::timeout(Duration::from_secs(5), stopping)
        .await
        .expect("bounded by the grace period, not by the wedged thread")
        .expect("stop task");
}

#[tokio::test]
async fn streams_that_stop_are_not_kept_waiting_for() {
    let (_sim, clocks) = simulated(SystemTime::UNIX_EPOCH);
    // The clock never moves: only stopping promptly can finish this.
    tokio::time::timeout(
        Duration::from_secs(5),
        stop_handles(
            vec![
                wedged("a", Duration::from_millis(50)),
                wedged("b", Duration::ZERO),
            ],
            &clocks,
        ),
    )
    .await
    .expect("prompt stops end without the grace period");
}
