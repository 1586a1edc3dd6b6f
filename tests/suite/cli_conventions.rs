//! The command behaves like one, through the built binary: `--version`,
//! completions and a man page made from the clap definitions, documented
//! exit codes, tables unless `--json`, and `sightline doctor` naming what a
//! broken machine lacks (a GStreamer plugin hidden from it, a truncated
//! model file, a dead camera) with the fix.

use crate::common;

use std::path::Path;
use std::process::{Command, Output};

use common::daemon::Daemon;
use serde_json::Value;

fn sightline(args: &[&str], env: &[(&str, &Path)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sightline"));
    cmd.args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("the binary runs")
}

fn text(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn version_completions_and_man_page_come_from_the_definitions() {
    let v = sightline(&["--version"], &[]);
    assert!(v.status.success());
    assert_eq!(
        text(&v).trim(),
        format!("sightline {}", env!("CARGO_PKG_VERSION"))
    );
    for shell in ["bash", "zsh", "fish"] {
        let c = sightline(&["completions", shell], &[]);
        assert!(c.status.success(), "{shell}");
        let script = text(&c);
        assert!(
            script.contains("doctor") && script.contains("check-config"),
            "{shell}: {script}"
        );
    }
    // The bash script parses.
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("sightline.bash");
    std::fs::write(&file, sightline(&["completions", "bash"], &[]).stdout).expect("write");
    let parsed = Command::new("bash")
        .arg("-n")
        .arg(&file)
        .status()
        .expect("bash");
    assert!(parsed.success(), "bash -n on the completion script");
    let man = text(&sightline(&["man"], &[]));
    assert!(
        man.starts_with(".ie") || man.contains(".TH sightline"),
        "{man}"
    );
    assert!(
        man.contains("doctor") && man.contains("Exit codes"),
        "the man page lists commands and exit codes"
    );
    let help = text(&sightline(&["--help"], &[]));
    assert!(
        help.contains("3  the daemon could not be reached"),
        "{help}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_failures_have_their_exit_codes_and_output_is_a_table_or_json() {
    let dir = tempfile::tempdir().expect("temp dir");
    let d = Daemon::start_allowing_local_sources(dir.path(), "").await;
    let key = dir.path().join("api-key");
    let wrong = dir.path().join("wrong-key");
    std::fs::write(&wrong, "not-the-key").expect("write");
    let dead = format!("http://127.0.0.1:{}", common::free_port());
    let base = d.base.clone();
    let codes = tokio::task::spawn_blocking(move || {
        let run = |api: &str, key: &Path, args: &[&str]| {
            let mut all: Vec<&str> = args.to_vec();
            all.extend(["--api", api, "--key-file"]);
            let mut cmd = Command::new(env!("CARGO_BIN_EXE_sightline"));
            cmd.args(all).arg(key);
            cmd.output().expect("runs")
        };
        let table = run(&base, &key, &["streams", "list"]);
        let json = run(&base, &key, &["streams", "list", "--json"]);
        let added = run(
            &base,
            &key,
            &[
                "streams",
                "add",
                "--name",
                "gate",
                "--url",
                "test:ball",
                "--json",
            ],
        );
        let listed = run(&base, &key, &["streams", "list"]);
        vec![
            ("table", table),
            ("json", json),
            ("added", added),
            ("listed", listed),
            ("unreachable", run(&dead, &key, &["events", "list"])),
            ("wrong key", run(&base, &wrong, &["events", "list"])),
            (
                "not found",
                run(&base, &key, &["alerts", "enable", "no-such-alert"]),
            ),
            (
                "invalid",
                run(
                    &base,
                    &key,
                    &["events", "create", "--prompt", "", "--label", "x"],
                ),
            ),
            (
                "no key file",
                run(&base, &dir.path().join("nope"), &["events", "list"]),
            ),
        ]
    })
    .await
    .expect("joins");
    let code = |name: &str| {
        codes
            .iter()
            .find(|(n, _)| *n == name)
            .and_then(|(_, o)| o.status.code())
    };
    assert_eq!(text(&codes[0].1), "(none)\n", "an empty list");
    let parsed: Value = serde_json::from_str(&text(&codes[1].1)).expect("--json parses");
    assert!(parsed.is_object());
    let added: Value = serde_json::from_str(&text(&codes[2].1)).expect("--json parses");
    let listed = text(&codes[3].1);
    assert!(listed.starts_with("ID"), "a table with a header: {listed}");
    assert!(
        listed.contains(added["id"].as_str().expect("id")),
        "{listed}"
    );
    assert_eq!(code("unreachable"), Some(3));
    assert_eq!(code("wrong key"), Some(4));
    assert_eq!(code("not found"), Some(5));
    assert_eq!(code("invalid"), Some(2));
    assert_eq!(code("no key file"), Some(2));
    d.stop().await;
}

/// A plugin folder with every system plugin but the RTSP one.
fn plugins_without_rtsp(dir: &Path) -> std::path::PathBuf {
    let system = Path::new("/usr/lib/x86_64-linux-gnu/gstreamer-1.0");
    let out = dir.join("plugins");
    std::fs::create_dir_all(&out).expect("dir");
    for e in std::fs::read_dir(system).expect("system plugins").flatten() {
        let name = e.file_name();
        if name.to_string_lossy() != "libgstrtsp.so" {
            let _ = std::os::unix::fs::symlink(e.path(), out.join(&name));
        }
    }
    out
}

#[test]
fn doctor_names_what_is_missing_and_the_fix() {
    let dir = tempfile::tempdir().expect("temp dir");
    // A model folder whose model.onnx was cut short.
    let model = dir.path().join("person-copy");
    std::fs::create_dir_all(&model).expect("dir");
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/ssdlite-person");
    for f in ["model.toml", "model.onnx"] {
        std::fs::copy(src.join(f), model.join(f)).expect("copy");
    }
    let onnx = std::fs::read(model.join("model.onnx")).expect("read");
    std::fs::write(model.join("model.onnx"), &onnx[..onnx.len() / 3]).expect("truncate");
    let server = sightline::tools::rtsp_server::RtspServer::serve_files(
        0,
        &[("cam", &common::media("demo.mp4"))],
    )
    .expect("rtsp");
    let config = dir.path().join("sightline.toml");
    std::fs::write(
        &config,
        format!(
            "[[models]]\nname = \"person\"\npath = \"{}\"\n\
             [[streams]]\nid = \"live\"\nurl = \"{}\"\n\
             [[streams]]\nid = \"dead\"\nurl = \"rtsp://127.0.0.1:{}/x\"\n\
             [state]\ndir = \"{}\"\n",
            model.display(),
            server.url("cam"),
            common::free_port(),
            dir.path().join("state").display()
        ),
    )
    .expect("config");
    let plugins = plugins_without_rtsp(dir.path());
    let registry = dir.path().join("registry.bin");
    let cfg = config.to_str().expect("utf-8 path");
    let out = sightline(
        &["doctor", "--config", cfg],
        &[
            ("GST_PLUGIN_SYSTEM_PATH", &plugins),
            ("GST_REGISTRY", &registry),
        ],
    );
    let report = text(&out);
    assert_eq!(out.status.code(), Some(1), "{report}");
    let line = |check: &str| {
        report
            .lines()
            .find(|l| l.get(6..).is_some_and(|rest| rest.starts_with(check)))
            .unwrap_or_else(|| panic!("no {check} line: {report}"))
            .to_string()
    };
    let gst = line("gstreamer");
    assert!(gst.starts_with("FAIL") && gst.contains("rtspsrc"), "{gst}");
    assert!(
        gst.contains("apt-get install gstreamer1.0-plugins-good"),
        "{gst}"
    );
    assert!(gst.contains("unset GST_PLUGIN_SYSTEM_PATH"), "{gst}");
    let m = line("model");
    assert!(
        m.starts_with("FAIL") && m.contains("person-copy") && m.contains("fix:"),
        "{m}"
    );
    assert!(line("camera live").starts_with("ok"), "{report}");
    let dead = line("camera dead");
    assert!(
        dead.starts_with("FAIL") && dead.contains("cannot connect"),
        "{dead}"
    );
    assert!(line("state").starts_with("ok"), "{report}");
    assert!(line("onnx").starts_with("ok"), "{report}");

    // The same findings as JSON, and a healthy machine passes.
    let json = sightline(&["doctor", "--config", cfg, "--json"], &[]);
    let findings: Value = serde_json::from_slice(&json.stdout).expect("--json parses");
    let gst = &findings.as_array().expect("a list")[0];
    assert_eq!(
        (gst["check"].as_str(), gst["ok"].as_bool()),
        (Some("gstreamer"), Some(true))
    );
    std::fs::copy(src.join("model.onnx"), model.join("model.onnx")).expect("repair");
    let body = std::fs::read_to_string(&config).expect("read");
    let healthy: String = body
        .split("[[streams]]\nid = \"dead\"")
        .next()
        .unwrap_or_default()
        .to_string()
        + &format!(
            "[state]\ndir = \"{}\"\n",
            dir.path().join("state").display()
        );
    std::fs::write(&config, healthy).expect("write");
    let ok = sightline(&["doctor", "--config", cfg], &[]);
    assert!(ok.status.success(), "{}", text(&ok));
}
