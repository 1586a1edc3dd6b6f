//! Motion gating on real parts: clips played by a real RTSP server, the
//! default person detector through ONNX Runtime, alerts to a real HTTP
//! receiver.
//!
//! - Each end-to-end clip is watched twice at once, gated and ungated: the
//!   occurrences are the same (count, onset within one sampled frame), while
//!   the gated stream skips most of the clips' still frames.
//! - In keyframe mode, twice more, with and without the compressed-domain
//!   gate before the decoder: the same occurrences (onset within one
//!   keyframe; on the ground-truth clip the person walks into a scene
//!   still for 10 s, long enough for the gate to have learned it), while
//!   the gate leaves keyframes of the still stretches undecoded.
//! - A real still with sensor-like noise added before encoding: no
//!   occurrence, and past the gate's learning no more keyframes decoded
//!   than `max_unscored_secs` asks for.
//! - A still test pattern is scored only every `max_unscored_secs`.
//! - A moving ball is scored every frame, and far less when a mask covers
//!   the picture.

use crate::common;

use std::time::Duration;

use common::daemon::Daemon;
use common::receiver::Receiver;
use serde_json::Value;
use sightline::tools::rtsp_server::RtspServer;

/// The stream's counters for the person model in `GET status`.
fn counters(status: &Value, stream: &str) -> (u64, u64) {
    let s = status["streams"]
        .as_array()
        .and_then(|a| a.iter().find(|s| s["id"] == stream))
        .unwrap_or_else(|| panic!("{stream} in {status}"));
    let m = &s["models"][0];
    (
        m["frames"].as_u64().unwrap_or(0),
        m["skipped_no_motion"].as_u64().unwrap_or(0),
    )
}

/// Runs a daemon on `streams` for `secs` with the person event alerting
/// `hook` on every stream (no recording); returns its `GET status`.
async fn watch(streams: &str, hook: &Receiver, secs: u64) -> Value {
    let extra = format!(
        "{streams}[[events]]\nid = \"person\"\nprompt = \"Detect person\"\n\
         [[alerts]]\nid = \"people\"\nevent = \"person\"\ncallback_url = \"{}\"\n\
         [recording]\nenabled = false\n",
        hook.url()
    );
    let dir = tempfile::tempdir().expect("temp dir");
    let d = Daemon::start(dir.path(), &extra).await;
    tokio::time::sleep(Duration::from_secs(secs)).await;
    let status = d.ok("GET", "status", None).await;
    d.stop().await;
    status
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gating_changes_no_occurrence_on_the_end_to_end_clips() {
    let clips = [("gt", "ground_truth.mp4"), ("models", "models.mp4")];
    let files: Vec<(&str, std::path::PathBuf)> =
        clips.iter().map(|(n, f)| (*n, common::media(f))).collect();
    let refs: Vec<(&str, &std::path::Path)> =
        files.iter().map(|(n, p)| (*n, p.as_path())).collect();
    let server = RtspServer::serve_files(0, &refs).expect("rtsp server");
    let mut hook = Receiver::start().await.expect("receiver");
    let mut extra = String::new();
    for (name, _) in clips {
        let kinds = [
            ("gated", "motion = { enabled = true }"),
            ("plain", "motion = { enabled = false }"),
            (
                "bits",
                "keyframes_only = true\nmotion = { compressed = true }",
            ),
            (
                "keys",
                "keyframes_only = true\nmotion = { compressed = false }",
            ),
        ];
        for (kind, settings) in kinds {
            extra += &format!(
                "[[streams]]\nid = \"{name}-{kind}\"\nurl = \"{}\"\nfps = 2\n{settings}\n",
                server.url(name)
            );
        }
    }
    // 30 s clips, then the end message (4 misses at 2 fps).
    let status = watch(&extra, &hook, 34).await;

    let seen = hook.occurrence_times();
    eprintln!("occurrences: {seen:?}");
    for (name, _) in clips {
        let get = |kind: &str, phase: &str| {
            let key = (format!("{name}-{kind}"), "person".into(), phase.into());
            seen.get(&key).cloned().unwrap_or_default()
        };
        let (gated, plain) = (get("gated", "start"), get("plain", "start"));
        // Both clips are 30 s, so the server's loop brings nothing back
        // before the watch ends: one person each (walkers, an astronaut).
        assert_eq!(plain.len(), 1, "{name}: one occurrence ungated: {seen:?}");
        assert_eq!(gated.len(), plain.len(), "{name}: same count: {seen:?}");
        for (g, p) in gated.iter().zip(&plain) {
            assert!(
                (g - p).abs() <= 0.5 + 1e-6,
                "{name}: onset {g} gated vs {p} ungated"
            );
        }
        assert_eq!(get("gated", "end").len(), get("plain", "end").len());
        let (scored, skipped) = counters(&status, &format!("{name}-gated"));
        let (plain_scored, plain_skipped) = counters(&status, &format!("{name}-plain"));
        eprintln!("{name}: gated scored {scored} skipped {skipped}; plain scored {plain_scored}");
        assert_eq!(plain_skipped, 0, "{name}: ungated skips nothing");
        assert!(
            skipped > scored,
            "{name}: the clip is mostly stills, so most frames are skipped: \
             scored {scored}, skipped {skipped}"
        );
        // Keyframe mode (one keyframe a second here), with and without the
        // compressed-domain gate.
        let (bits, keys) = (get("bits", "start"), get("keys", "start"));
        assert_eq!(
            keys.len(),
            1,
            "{name}: one occurrence on keyframes: {seen:?}"
        );
        assert_eq!(bits.len(), keys.len(), "{name}: same count: {seen:?}");
        // The gate may see a walker one keyframe later (when the walk starts
        // at the end of a stretch): one keyframe is 1 s on these clips,
        // plus the payload's millisecond rounding of stream times.
        for (b, k) in bits.iter().zip(&keys) {
            assert!(
                (b - k).abs() <= 1.0 + 0.01,
                "{name}: onset {b} with the compressed gate vs {k} without"
            );
        }
        assert_eq!(get("bits", "end").len(), get("keys", "end").len());
        let undecoded = |kind: &str| {
            let id = format!("{name}-{kind}");
            let s = status["streams"]
                .as_array()
                .and_then(|a| a.iter().find(|s| s["id"] == id));
            s.and_then(|s| s["health"]["undecoded_keyframes"].as_u64())
                .unwrap_or(0)
        };
        let (bits_scored, bits_skipped) = counters(&status, &format!("{name}-bits"));
        eprintln!(
            "{name}: compressed gate left {} keyframes undecoded, scored {bits_scored}, skipped {bits_skipped}",
            undecoded("bits")
        );
        assert!(
            undecoded("bits") >= 5,
            "{name}: still keyframes left undecoded"
        );
        assert_eq!(undecoded("keys"), 0, "{name}: off means off");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn still_scenes_wait_for_max_unscored_secs_and_masks_hide_motion() {
    let hook = Receiver::start().await.expect("receiver");
    let everything = "[[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]]";
    let streams = format!(
        "[[streams]]\nid = \"still\"\nurl = \"test:colors\"\nfps = 2\n\
         motion = {{ max_unscored_secs = 2.0 }}\n\
         [[streams]]\nid = \"ball\"\nurl = \"test:ball\"\nfps = 2\n\
         [[streams]]\nid = \"masked\"\nurl = \"test:ball\"\nfps = 2\n\
         motion = {{ max_unscored_secs = 2.0, masks = [{everything}] }}\n"
    );
    let status = watch(&streams, &hook, 12).await;
    for (stream, (scored, skipped)) in ["still", "ball", "masked"]
        .iter()
        .map(|s| (*s, counters(&status, s)))
    {
        eprintln!("{stream}: scored {scored}, skipped {skipped}");
    }
    let (scored, skipped) = counters(&status, "still");
    let total = scored + skipped;
    assert!(total >= 12, "still: frames came: {total}");
    // One scored frame per 2 s (4 frames at 2 fps), plus the first.
    assert!(
        scored <= total / 4 + 2,
        "still: scored only every max_unscored_secs: {scored} of {total}"
    );
    assert!(scored >= 2, "still: but scored then: {scored}");
    let (scored, skipped) = counters(&status, "ball");
    assert!(
        scored > 3 * skipped,
        "the moving ball is scored: {scored} scored, {skipped} skipped"
    );
    // Masked, the ball's motion counts for nothing. The detector sees a
    // "person" in the pattern at times, and an occupied scene is rechecked
    // every second: at most every other frame is scored.
    let (scored, skipped) = counters(&status, "masked");
    let total = scored + skipped;
    assert!(total >= 12, "masked: frames came: {total}");
    assert!(
        scored <= total / 2 + 2 && skipped >= total / 3,
        "masked: motion inside the mask is ignored: {scored} scored of {total}"
    );
}

/// Encodes 20 s of the ground-truth clip's first picture (a real still)
/// with sensor-like noise added before encoding (random snow blended at 8%,
/// a new pattern every frame), 640×360 at 25 fps, a keyframe every 12
/// frames, at a constant 1.5 Mbit/s as cameras do, into `out`.
fn noisy_still(out: &std::path::Path) {
    use gstreamer as gst;
    use gstreamer::prelude::*;
    gst::init().expect("GStreamer");
    let line = format!(
        "compositor name=mix sink_1::alpha=0.08 ! videoconvert ! \
         x264enc key-int-max=12 bframes=0 speed-preset=veryfast bitrate=1500 ! h264parse ! \
         mp4mux ! filesink location=\"{out}\" \
         filesrc location=\"{clip}\" ! qtdemux ! h264parse ! avdec_h264 ! videoconvert ! videoscale ! \
         video/x-raw,width=640,height=360,format=I420 ! imagefreeze num-buffers=500 ! \
         video/x-raw,framerate=25/1 ! mix.sink_0 \
         videotestsrc pattern=snow num-buffers=500 ! \
         video/x-raw,width=640,height=360,framerate=25/1,format=I420 ! mix.sink_1",
        out = out.display(),
        clip = common::media("ground_truth.mp4").display(),
    );
    let pipeline = gst::parse::launch(&line)
        .expect("the clip's pipeline")
        .downcast::<gst::Pipeline>()
        .expect("a pipeline");
    pipeline.set_state(gst::State::Playing).expect("encodes");
    let bus = pipeline.bus().expect("bus");
    let end = bus.timed_pop_filtered(
        gst::ClockTime::from_seconds(120),
        &[gst::MessageType::Eos, gst::MessageType::Error],
    );
    let _ = pipeline.set_state(gst::State::Null);
    match end.as_ref().map(|m| m.view()) {
        Some(gst::MessageView::Eos(_)) => {}
        other => panic!("building the noisy still clip: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_noisy_still_scene_is_left_undecoded() {
    let dir = tempfile::tempdir().expect("temp dir");
    let clip = dir.path().join("noisy-still.mp4");
    noisy_still(&clip);
    let server = RtspServer::serve_files(0, &[("still", &clip)]).expect("rtsp server");
    let mut hook = Receiver::start().await.expect("receiver");
    let streams = format!(
        "[[streams]]\nid = \"still\"\nurl = \"{}\"\nfps = 2\nkeyframes_only = true\n\
         motion = {{ max_unscored_secs = 3.0 }}\n",
        server.url("still")
    );
    let secs = 24;
    let status = watch(&streams, &hook, secs).await;
    let s = status["streams"]
        .as_array()
        .and_then(|a| a.iter().find(|s| s["id"] == "still"))
        .cloned()
        .unwrap_or_default();
    let decoded = s["health"]["frames"].as_u64().unwrap_or(0);
    let undecoded = s["health"]["undecoded_keyframes"].as_u64().unwrap_or(0);
    eprintln!("noisy still, {secs} s: {decoded} keyframes decoded, {undecoded} left undecoded");
    // Learning takes the first few keyframes (the pixel gate must find
    // MIN_LEARNED stretches still); then one every max_unscored_secs, the
    // first of them up to a period early (the stream's phase), one more at
    // the edge of the window, and one for a still stretch that came out
    // above the floor while little was learned (the floor is the 75th
    // percentile of the learned still stretches; this clip's vary ±30%).
    let learning = sightline::source::bitgate::MIN_LEARNED as u64 + 1;
    assert!(
        decoded <= learning + secs / 3 + 3,
        "decoded {decoded} keyframes in {secs} s: more than learning and max_unscored_secs need"
    );
    assert!(
        undecoded > decoded,
        "most keyframes left undecoded: {undecoded} against {decoded}"
    );
    let alerts = common::drain(&mut hook.rx);
    assert!(alerts.is_empty(), "nothing happens in the clip: {alerts:?}");
}
