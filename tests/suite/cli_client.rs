//! The operator CLI (`sightline streams|indexes|events|alerts …`) against a
//! running daemon, through the built binary as an operator would run it.
//! Every client subcommand runs here once with `--json`, and each one that
//! succeeds must print JSON that parses.

use crate::common;

use common::daemon::Daemon;
use serde_json::Value;

fn cli(d: &Daemon, key_file: &std::path::Path, args: &[&str]) -> (bool, Value, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sightline"))
        .args(args)
        .args(["--json", "--api", &d.base, "--key-file"])
        .arg(key_file)
        .output()
        .expect("the CLI runs");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let parsed = serde_json::from_str::<Value>(&stdout);
    assert!(
        !out.status.success() || parsed.is_ok(),
        "{args:?} --json printed what does not parse: {stdout:?}"
    );
    let v = parsed.unwrap_or(Value::Null);
    (
        out.status.success(),
        v,
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_manages_a_running_daemon() {
    let dir = tempfile::tempdir().expect("temp dir");
    let d = Daemon::start_allowing_local_sources(dir.path(), "").await;
    let key = dir.path().join("api-key");
    let (d, key) = tokio::task::spawn_blocking(move || {
        let (ok, s, err) = cli(
            &d,
            &key,
            &[
                "streams",
                "add",
                "--name",
                "gate",
                "--url",
                "test:ball",
                "--fps",
                "1",
            ],
        );
        assert!(ok, "{err}");
        let sid = s["id"].as_str().expect("id").to_string();
        let (ok, list, _) = cli(&d, &key, &["streams", "list"]);
        assert!(ok && list["results"][0]["id"] == sid.as_str());
        let (ok, ix, err) = cli(&d, &key, &["indexes", "create", &sid, "--time", "2"]);
        assert!(ok, "{err}");
        let iid = ix["rtstream_index_id"]
            .as_str()
            .expect("index id")
            .to_string();
        let (ok, ev, err) = cli(
            &d,
            &key,
            &[
                "events",
                "create",
                "--prompt",
                "Detect person",
                "--label",
                "person",
            ],
        );
        assert!(ok, "{err}");
        let eid = ev["event_id"].as_str().expect("event id").to_string();
        let (ok, a, err) = cli(
            &d,
            &key,
            &[
                "alerts",
                "create",
                "--stream",
                &sid,
                "--index",
                &iid,
                "--event",
                &eid,
                "--callback-url",
                "http://127.0.0.1:9/x",
            ],
        );
        assert!(ok, "{err}");
        let aid = a["alert_id"].as_str().expect("alert id").to_string();
        let (ok, a, _) = cli(&d, &key, &["alerts", "disable", &aid]);
        assert!(ok && a["status"] == "disabled");
        let (ok, a, _) = cli(&d, &key, &["alerts", "enable", &aid]);
        assert!(ok && a["status"] == "enabled", "{a}");
        let (ok, all, _) = cli(&d, &key, &["alerts", "list"]);
        assert!(ok && all.to_string().contains(&aid), "{all}");
        let (ok, ixs, _) = cli(&d, &key, &["indexes", "list", &sid]);
        assert!(ok && ixs.to_string().contains(&iid), "{ixs}");
        for step in ["stop", "start"] {
            let (ok, _, err) = cli(&d, &key, &["indexes", step, &sid, &iid]);
            assert!(ok, "indexes {step}: {err}");
        }
        let (ok, _, err) = cli(&d, &key, &["indexes", "records", &sid, &iid]);
        assert!(ok, "indexes records: {err}");
        let (ok, evs, _) = cli(&d, &key, &["events", "list"]);
        assert!(ok && evs.to_string().contains(&eid), "{evs}");
        let (ok, _, err) = cli(
            &d,
            &key,
            &[
                "events",
                "create",
                "--prompt",
                "Detect a forklift",
                "--label",
                "f",
            ],
        );
        assert!(!ok && err.contains("422"), "refused prompt: {err}");
        let (ok, _, _) = cli(&d, &key, &["streams", "stop", &sid]);
        assert!(ok);
        let (_, s, _) = cli(&d, &key, &["streams", "list"]);
        assert_eq!(s["results"][0]["status"], "stopped");
        let (ok, _, err) = cli(&d, &key, &["streams", "start", &sid]);
        assert!(ok, "streams start: {err}");
        for (what, id) in [("alerts", &aid), ("events", &eid), ("streams", &sid)] {
            let (ok, _, err) = cli(&d, &key, &[what, "delete", id]);
            assert!(ok, "{what} delete: {err}");
        }
        let (_, s, _) = cli(&d, &key, &["streams", "list"]);
        assert_eq!(s["results"], serde_json::json!([]), "deleted: {s}");
        let wrong = key.with_file_name("wrong-key");
        std::fs::write(&wrong, "0123456789abcdef0123").expect("write");
        let (ok, _, err) = cli(&d, &wrong, &["streams", "list"]);
        assert!(!ok && err.contains("401"), "wrong key refused: {err}");
        (d, key)
    })
    .await
    .expect("cli steps");
    drop(key);
    d.stop().await;
}
