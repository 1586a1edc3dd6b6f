//! A [`Sources`] that replays decoded frames instead of running GStreamer,
//! so the engine, the pool and the matcher can be driven by a test: frames
//! come from a function of stream time at a native frame rate, go through
//! the same [`Sampler`] as a camera's, and are paced by the given clocks
//! (simulated clocks make a minute of video take no time at all). It can
//! also stand in for what no real camera does on demand: a pipeline that
//! will not stop.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use super::sampler::Sampler;
use super::{Branch, Reporter, Running, SourceEvent, SourceStats, Sources};
use crate::clock::Clocks;
use crate::domain::StreamSpec;
use crate::domain::{Frame, StreamId};
use crate::pool::Submitter;

/// Paints the frame shown at a stream time, `width * height * 3` RGB bytes.
pub type Painter = Arc<dyn Fn(f64, u32, u32) -> Vec<u8> + Send + Sync>;

/// Replayed streams.
#[derive(Clone)]
pub struct Replay {
    /// Frames per second of the replayed "camera".
    pub native_fps: f64,
    /// Every `gop`-th frame is a keyframe.
    pub gop: u64,
    pub paint: Painter,
    /// `Some(d)`: stopping a stream takes `d` (a pipeline wedged in teardown).
    pub stop_hold: Option<Duration>,
}

impl Replay {
    /// Grey frames at 10 fps with a keyframe every second.
    pub fn grey() -> Replay {
        Replay {
            native_fps: 10.0,
            gop: 10,
            paint: Arc::new(|_, w, h| vec![128; (w * h * 3) as usize]),
            stop_hold: None,
        }
    }
}

impl Sources for Replay {
    fn spawn(
        &self,
        cfg: StreamSpec,
        branches: Vec<Branch>,
        submit: Submitter,
        report: Reporter,
        clocks: Arc<dyn Clocks>,
    ) -> std::io::Result<Box<dyn Running>> {
        let stats = Arc::new(SourceStats::default());
        let stop = Arc::new(AtomicBool::new(false));
        let sampler = Arc::new(Mutex::new(Sampler::new(cfg.fps, cfg.keyframes_only)));
        let player = Player {
            replay: self.clone(),
            id: cfg.id.clone(),
            branches,
            submit,
            report,
            clocks,
            stats: Arc::clone(&stats),
            stop: Arc::clone(&stop),
            sampler: Arc::clone(&sampler),
        };
        let thread = std::thread::Builder::new()
            .name(format!("replay-{}", cfg.id))
            .spawn(move || player.play())?;
        Ok(Box::new(Replaying {
            id: cfg.id,
            stats,
            stop,
            sampler,
            thread,
            hold: self.stop_hold,
        }))
    }
}

struct Player {
    replay: Replay,
    id: StreamId,
    branches: Vec<Branch>,
    submit: Submitter,
    report: Reporter,
    clocks: Arc<dyn Clocks>,
    stats: Arc<SourceStats>,
    stop: Arc<AtomicBool>,
    sampler: Arc<Mutex<Sampler>>,
}

impl Player {
    fn play(self) {
        let step = Duration::from_secs_f64(1.0 / self.replay.native_fps.max(0.1));
        let mut n = 0u64;
        let mut seq = 0u64;
        while !self.stop.load(Ordering::SeqCst) {
            let t = n as f64 * step.as_secs_f64();
            let key = n % self.replay.gop.max(1) == 0;
            let admit = self.sampler.lock().is_ok_and(|mut s| s.admit(t, key));
            if admit {
                if seq == 0 {
                    (self.report)(SourceEvent::Up(self.id.clone()));
                }
                self.stats.frames.fetch_add(1, Ordering::Relaxed);
                for b in &self.branches {
                    let (w, h) = (b.out.width, b.out.height);
                    self.submit.submit(Frame {
                        stream_id: self.id.clone(),
                        seq,
                        wall: self.clocks.wall(),
                        arrived: self.clocks.now(),
                        stream_secs: t,
                        width: w,
                        height: h,
                        rgb: (self.replay.paint)(t, w, h),
                        content: [0.0, 0.0, 1.0, 1.0],
                        aspect: w as f32 / h.max(1) as f32,
                        models: Arc::clone(&b.models),
                        // Painted frames are for exact, frame-by-frame tests.
                    });
                }
                seq += 1;
            }
            n += 1;
            self.clocks.sleep_blocking(step);
        }
    }
}

struct Replaying {
    id: StreamId,
    stats: Arc<SourceStats>,
    stop: Arc<AtomicBool>,
    sampler: Arc<Mutex<Sampler>>,
    thread: JoinHandle<()>,
    hold: Option<Duration>,
}

impl Running for Replaying {
    fn id(&self) -> &StreamId {
        &self.id
    }

    fn stats(&self) -> &Arc<SourceStats> {
        &self.stats
    }

    fn retune(&self, fps: f64, keyframes_only: bool) {
        if let Ok(mut s) = self.sampler.lock() {
            s.retune(fps, keyframes_only);
        }
    }

    fn stop(self: Box<Self>) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(hold) = self.hold {
            // Real time on purpose: a wedged teardown does not care about
            // the daemon's clocks.
            std::thread::sleep(hold);
        }
        // Not joined: under simulated clocks the player sleeps until the
        // test moves time; it sees the flag when it wakes and submits nothing more.
        drop(self.thread);
    }
}
