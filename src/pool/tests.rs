//! The pool's admission and drop policy, with a scorer that just sleeps: the
//! policy does not depend on what scoring does (the ONNX path is covered by
//! the integration tests).

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime};

use super::*;

struct Sleepy(Duration);

impl Scorer for Sleepy {
    fn score(&mut self, _: &Frame) -> Result<Seen, ModelError> {
        std::thread::sleep(self.0);
        Ok(Seen::default())
    }
}

fn frame(stream: &str, seq: u64) -> Frame {
    Frame {
        stream_id: StreamId::new(stream),
        seq,
        wall: SystemTime::now(),
        arrived: Instant::now(),
        stream_secs: seq as f64,
        width: 1,
        height: 1,
        rgb: vec![0; 3],
        content: [0.0, 0.0, 1.0, 1.0],
        aspect: 0.0,
        models: Arc::from([0usize]),
    }
}

fn pool(
    capacity: usize,
    work: Duration,
    max_age: Duration,
) -> (Pool, crossbeam_channel::Receiver<Scores>) {
    let (tx, rx) = crossbeam_channel::bounded(1000);
    let cfg = PoolConfig {
        workers: 1,
        capacity,
        max_age,
    };
    let p = Pool::start(
        &cfg,
        move |_| Ok(vec![Box::new(Sleepy(work)) as Box<dyn Scorer>]),
        tx,
    )
    .expect("start");
    (p, rx)
}

#[test]
fn full_queue_replaces_the_oldest_frame_of_the_same_stream() {
    let (p, rx) = pool(3, Duration::from_millis(200), Duration::from_secs(10));
    let s = p.submitter();
    assert_eq!(s.submit(frame("a", 0)), Admission::Queued);
    std::thread::sleep(Duration::from_millis(50)); // worker takes a0
    s.submit(frame("a", 1));
    s.submit(frame("b", 1));
    s.submit(frame("a", 2));
    assert_eq!(
        s.submit(frame("a", 3)),
        Admission::QueuedReplacing,
        "a1 goes"
    );
    assert_eq!(s.queued(), 3);
    let stats = p.stats();
    p.shutdown();
    let got: Vec<(String, u64)> = rx
        .try_iter()
        .map(|x| (x.stream_id.to_string(), x.seq))
        .collect();
    assert_eq!(
        got,
        vec![
            ("a".into(), 0),
            ("b".into(), 1),
            ("a".into(), 2),
            ("a".into(), 3)
        ]
    );
    assert_eq!(stats.dropped_full.load(Ordering::Relaxed), 1);
    assert_eq!(stats.drops_by_stream().get(&StreamId::new("a")), Some(&1));
}

#[test]
fn a_stream_with_nothing_queued_evicts_the_busiest_stream() {
    let (p, _rx) = pool(2, Duration::from_millis(300), Duration::from_secs(10));
    let s = p.submitter();
    s.submit(frame("a", 0));
    std::thread::sleep(Duration::from_millis(50));
    s.submit(frame("a", 1));
    s.submit(frame("a", 2));
    assert_eq!(
        s.submit(frame("b", 0)),
        Admission::QueuedEvicting(StreamId::new("a"))
    );
    p.shutdown();
}

#[test]
fn stale_frames_are_dropped_not_scored() {
    let (p, rx) = pool(10, Duration::from_millis(100), Duration::from_millis(150));
    let s = p.submitter();
    for i in 0..5 {
        s.submit(frame("a", i));
    }
    let stats = p.stats();
    p.shutdown();
    let scored = rx.try_iter().count() as u64;
    let stale = stats.dropped_stale.load(Ordering::Relaxed);
    assert_eq!(scored + stale, 5);
    assert!(
        stale >= 2,
        "frames that waited beyond max_age are dropped: {stale}"
    );
}

#[test]
fn submit_never_blocks_even_when_the_worker_is_stuck() {
    let (p, _rx) = pool(4, Duration::from_millis(500), Duration::from_secs(10));
    let s = p.submitter();
    let t = Instant::now();
    for i in 0..10_000 {
        s.submit(frame("a", i));
    }
    assert!(
        t.elapsed() < Duration::from_millis(400),
        "10k submits took {:?}",
        t.elapsed()
    );
    assert!(s.queued() <= 4);
    p.shutdown();
}

#[test]
fn a_failing_worker_start_is_reported() {
    let (tx, _rx) = crossbeam_channel::bounded(1);
    let cfg = PoolConfig {
        workers: 2,
        capacity: 4,
        max_age: Duration::from_secs(1),
    };
    let r = Pool::start(&cfg, |_| Err(ModelError::Runtime("boom".into())), tx);
    assert!(matches!(r, Err(ModelError::Runtime(m)) if m == "boom"));
}

#[test]
fn a_loud_stream_does_not_crowd_out_a_quiet_one() {
    // "loud" submits ten frames for each of "quiet"'s; the worker can score
    // only a fraction. Round robin gives the quiet stream its every frame.
    let (p, rx) = pool(4, Duration::from_millis(20), Duration::from_secs(10));
    let s = p.submitter();
    for i in 0..100 {
        s.submit(frame("loud", i));
        if i % 10 == 0 {
            s.submit(frame("quiet", i / 10));
        }
        std::thread::sleep(Duration::from_millis(4));
    }
    let stats = p.stats();
    p.shutdown();
    let got: Vec<String> = rx.try_iter().map(|x| x.stream_id.to_string()).collect();
    let quiet = got.iter().filter(|s| *s == "quiet").count();
    let loud = got.len() - quiet;
    assert_eq!(quiet, 10, "every quiet frame scored: {got:?}");
    assert!(
        loud > 0 && loud < 100,
        "loud frames shed, some scored: {loud}"
    );
    let flow = stats.flow_of(&StreamId::new("loud")).expect("seen");
    assert!(flow.degraded && flow.shed_recent > 0, "{flow:?}");
    let quiet_flow = stats.flow_of(&StreamId::new("quiet")).expect("seen");
    assert!(!quiet_flow.degraded, "{quiet_flow:?}");
}

#[test]
fn an_unchanged_frame_repeats_the_last_results_without_scoring() {
    let (p, rx) = pool(10, Duration::from_millis(1), Duration::from_secs(10));
    let s = p.submitter();
    let gate: Option<Arc<super::FrameGate>> =
        super::motion::Gate::new(&crate::domain::MotionSpec::default());
    for i in 0..4 {
        let mut f = frame("still", i);
        f.stream_secs = i as f64 * 0.5;
        s.submit_gated(f, gate.as_ref());
        std::thread::sleep(Duration::from_millis(30));
    }
    let stats = p.stats();
    p.shutdown();
    let got: Vec<bool> = rx.try_iter().map(|x| x.repeated).collect();
    assert_eq!(got, vec![false, true, true, true]);
    assert_eq!(stats.skipped_no_motion.load(Ordering::Relaxed), 3);
    assert_eq!(stats.scored.load(Ordering::Relaxed), 1);
}
