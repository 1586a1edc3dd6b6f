//! Bad input gets a clear error and harms nothing else: a dead camera next to
//! a live one, webhook receivers that are down or slow next to a healthy
//! one, malformed configs, prompts the model cannot score, a missing model.

use crate::common;

use std::process::Command;
use std::time::{Duration, Instant};

use axum::{routing::post, Router};
use common::receiver::{latency_ms, serve_local, Receiver};
use sightline::app::{self, Hooks};
use sightline::config::Config;
use sightline::tools::rtsp_server::RtspServer;

/// An HTTP receiver that takes 20 s to answer anything.
async fn slow_receiver() -> String {
    let app = Router::new().route(
        "/{*p}",
        post(|| async {
            tokio::time::sleep(Duration::from_secs(20)).await;
            "late"
        }),
    );
    let addr = serve_local(app).await.expect("slow receiver listens");
    format!("http://{addr}/hook")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_camera_and_dead_receivers_do_not_hurt_the_rest() {
    let server =
        RtspServer::serve_files(0, &[("live", &common::media("demo.mp4"))]).expect("rtsp server");
    let mut good = Receiver::start().await.expect("receiver");
    let slow = slow_receiver().await;
    // A port nobody listens on: connection refused, both for RTSP and HTTP.
    let closed = common::free_port();
    let text = format!(
        r#"
[[streams]]
id = "dead"
url = "rtsp://127.0.0.1:{closed}/nothing"
max_backoff_secs = 1

[[streams]]
id = "live"
url = "{live}"

[[events]]
id = "person"
prompt = "Detect person"

[[alerts]]
id = "to-down"
event = "person"
callback_url = "http://127.0.0.1:{closed}/hook"

[[alerts]]
id = "to-slow"
event = "person"
callback_url = "{slow}"

[[alerts]]
id = "to-good"
event = "person"
callback_url = "{good}"

[webhook]
timeout_ms = 3000
allow_private = ["127.0.0.1/32"]
"#,
        live = server.url("live"),
        good = good.url(),
    );
    let config = Config::parse(&text, "t").expect("valid config");
    let run = tokio::spawn(app::run(
        config,
        Hooks::default(),
        tokio::time::sleep(Duration::from_secs(14)),
    ));

    // The person appears at 6 s of the clip; expect the start well before 14 s.
    let deadline = Instant::now() + Duration::from_secs(14);
    let mut got = None;
    while Instant::now() < deadline {
        if let Ok(Some(r)) = tokio::time::timeout(Duration::from_millis(500), good.rx.recv()).await
        {
            got = Some(r);
            break;
        }
    }
    let r = got.expect("the healthy receiver got the alert");
    assert_eq!(r.body["stream_id"], "live");
    assert_eq!(r.body["alert_id"], "to-good");
    let latency = latency_ms(&r.body, r.at).expect("latency");
    assert!(
        latency < 1000.0,
        "a slow and a dead receiver must not delay the good one: {latency} ms"
    );

    let summary = run
        .await
        .expect("join")
        .expect("daemon ran despite the dead camera");
    assert!(
        summary.stream_restarts >= 3,
        "the dead camera was retried: {summary:?}"
    );
    assert!(
        summary.scored + summary.skipped_no_motion >= 10,
        "the live camera kept being scored (or skipped as still): {summary:?}"
    );
    assert!(
        summary.delivery_retries >= 1,
        "the dead receiver's message failed and was kept for a retry: {summary:?}"
    );
}

fn sightline(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_sightline"))
        .args(args)
        .output()
        .expect("run sightline");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

fn write(dir: &tempfile::TempDir, text: &str) -> String {
    let p = dir.path().join("sightline.toml");
    std::fs::write(&p, text).expect("write config");
    p.to_string_lossy().into_owned()
}

#[test]
fn check_config_reports_every_problem_and_exits_2() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = write(
        &dir,
        "[[streams]]\nid = \"cam\"\nurl = \"rtsp://\"\nfps = -1\ncolour = 1\n[webhook]\ntimeout_ms = 1\n",
    );
    let (code, text) = sightline(&["check-config", &path]);
    assert_eq!(code, 2, "{text}");
    for want in [
        "streams[0].url",
        "streams[0].fps",
        "streams.0.colour",
        "webhook.timeout_ms",
        "4 problem(s)",
    ] {
        assert!(text.contains(want), "missing {want:?} in:\n{text}");
    }
}

#[test]
fn check_config_refuses_a_prompt_the_model_cannot_score() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = write(
        &dir,
        "[[events]]\nid = \"fl\"\nprompt = \"Detect a forklift in the walkway\"\n\
         [[events]]\nid = \"ok\"\nprompt = \"Detect intruder\"\n",
    );
    let (code, text) = sightline(&["check-config", &path]);
    assert_eq!(code, 2, "{text}");
    // Refused with every loaded model's vocabulary.
    for want in [
        "event \"fl\"",
        "model \"person\": the model detects: person",
        "model \"coco\": the model detects: person, bicycle, car",
    ] {
        assert!(text.contains(want), "missing {want:?} in {text}");
    }
    assert!(
        !text.contains("event \"ok\""),
        "a good prompt is not reported: {text}"
    );
}

/// `check-config` on `config` exits 2 and its output says every one of `wants`.
fn refused(dir: &tempfile::TempDir, config: &str, wants: &[&str]) {
    let path = write(dir, config);
    let (code, text) = sightline(&["check-config", &path]);
    assert_eq!(code, 2, "{text}");
    for want in wants {
        assert!(text.contains(want), "missing {want:?} in {text}");
    }
}

#[test]
fn check_config_refuses_unknown_and_colliding_model_names() {
    let dir = tempfile::tempdir().expect("tempdir");
    refused(
        &dir,
        "[[events]]\nid = \"car\"\nprompt = \"Detect car\"\nmodel = \"yolo-xl\"\n",
        &["model \"yolo-xl\" is not loaded", "\"person\", \"coco\""],
    );
    refused(
        &dir,
        "[[models]]\nname = \"det\"\npath = \"ssdlite-person\"\n\
         [[models]]\nname = \"det\"\npath = \"centernet-coco\"\n",
        &["two models are called \"det\""],
    );
    // A precision that does not exist, and int8 where the folder has none.
    refused(
        &dir,
        "[[models]]\nname = \"det\"\npath = \"ssdlite-person\"\nprecision = \"int4\"\n",
        &["models[0].precision", "\"int8\" or \"fp32\""],
    );
    refused(
        &dir,
        "[[models]]\nname = \"coco\"\npath = \"centernet-coco\"\nprecision = \"int8\"\n",
        &["model \"coco\"", "needs an [int8] file"],
    );
}

#[test]
fn check_config_accepts_a_good_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = write(&dir, "[[streams]]\nid = \"cam\"\nurl = \"test:ball\"\n[[events]]\nid = \"p\"\nprompt = \"someone\"\n");
    let (code, text) = sightline(&["check-config", &path]);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("ok (1 streams, 1 events"), "{text}");
    // It says which model scores each event.
    assert!(text.contains("event p -> model person"), "{text}");
}

#[test]
fn run_with_a_missing_model_fails_clearly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = write(&dir, "[model]\npath = \"no-such-model\"\n");
    let (code, text) = sightline(&["run", "--config", &path]);
    assert_eq!(code, 1, "{text}");
    assert!(
        text.contains("model \"no-such-model\" not found; looked in"),
        "{text}"
    );
}

#[test]
fn run_with_a_missing_config_file_fails_clearly() {
    let (code, text) = sightline(&["run", "--config", "/nonexistent/sightline.toml"]);
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("cannot read"), "{text}");
}

#[test]
fn the_shipped_example_config_is_valid() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/systemd/sightline.example.toml"
    );
    let (code, text) = sightline(&["check-config", path]);
    assert_eq!(code, 0, "{text}");
}

/// A model folder whose ONNX file is cut in half: `check-config` loads it
/// as `run` would, exits 2 and names the file.
#[test]
fn check_config_finds_a_truncated_model_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("models/ssdlite-person");
    let model = dir.path().join("broken-person");
    std::fs::create_dir_all(&model).expect("mkdir");
    std::fs::copy(src.join("model.toml"), model.join("model.toml")).expect("manifest");
    let onnx = std::fs::read(src.join("model.onnx")).expect("onnx");
    std::fs::write(model.join("model.onnx"), &onnx[..onnx.len() / 2]).expect("half");
    let path = write(&dir, &format!("[model]\npath = \"{}\"\n", model.display()));
    let (code, text) = sightline(&["check-config", &path]);
    assert_eq!(code, 2, "{text}");
    assert!(
        text.contains("broken-person/model.onnx") && !text.contains(": ok"),
        "{text}"
    );
}

/// This machine's ONNX Runtime (the CPU build from PyPI) has no CUDA or
/// OpenVINO provider: a model placed on one fails loudly, naming the
/// provider and the library it looked for, unless `fallback = "cpu"`.
#[test]
fn an_execution_provider_that_cannot_load_is_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    for (provider, ort_name) in [
        ("cuda", "CUDAExecutionProvider"),
        ("openvino", "OpenVINOExecutionProvider"),
    ] {
        let cfg = format!(
            "[[models]]\nname = \"person\"\npath = \"ssdlite-person\"\nprovider = \"{provider}\"\n"
        );
        let (code, text) = sightline(&["check-config", &write(&dir, &cfg)]);
        assert_eq!(code, 2, "{text}");
        let lib = format!("libonnxruntime_providers_{provider}.so");
        assert!(
            text.contains(ort_name) && text.contains(&lib) && text.contains("libonnxruntime.so"),
            "names the provider and the libraries: {text}"
        );
        let (code, text) = sightline(&[
            "check-config",
            &write(&dir, &format!("{cfg}fallback = \"cpu\"\n")),
        ]);
        assert_eq!(code, 0, "falls back to the CPU when asked: {text}");
    }
    let (code, text) = sightline(&[
        "check-config",
        &write(
            &dir,
            "[[models]]\nname = \"p\"\npath = \"ssdlite-person\"\nprovider = \"tpu\"\n",
        ),
    ]);
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("models[0].provider"), "{text}");
}
