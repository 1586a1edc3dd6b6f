//! Search and backtest through the API on a recorded clip: a real RTSP
//! server plays `colours.mp4` (0-8 s blue, 8-16 s red, 16-24 s green) to a
//! daemon running the generated dual encoder; the stored frame embeddings
//! must give back the true time ranges, before and after a restart, and the
//! stream's scene index must name the free-text event that matched.

use crate::common;

use std::path::Path;
use std::time::Duration;

use common::daemon::Daemon;
use serde_json::{json, Value};
use sightline::tools::rtsp_server::RtspServer;

fn config(url: &str) -> String {
    let model = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/colour-clip");
    format!(
        "[model]\npath = \"{}\"\n[[streams]]\nid = \"cam\"\nurl = \"{url}\"\nfps = 2\n\
         [[events]]\nid = \"red\"\nlabel = \"red\"\nprompt = \"a red object\"\n",
        model.display()
    )
}

/// Stream-time range of the best search result.
fn best_range(data: &Value) -> (f64, f64) {
    let r = &data["results"][0]["metadata"];
    (
        r["start_time"].as_f64().expect("start_time"),
        r["end_time"].as_f64().expect("end_time"),
    )
}

fn near(got: (f64, f64), want: (f64, f64), what: &str) {
    assert!(
        (got.0 - want.0).abs() <= 1.0 && (got.1 - want.1).abs() <= 1.0,
        "{what}: got {got:?}, true range {want:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_and_backtest_find_the_true_ranges() {
    let state = tempfile::tempdir().unwrap();
    let server = RtspServer::serve_files(0, &[("cam", &common::media("colours.mp4"))]).unwrap();
    let d = Daemon::start(state.path(), &config(&server.url("cam"))).await;
    let index = d
        .ok(
            "POST",
            "rtstream/cam/index/scene",
            Some(json!({"extraction_type": "time", "extraction_config": {"time": 2}, "name": "colours"})),
        )
        .await;
    let index = index["rtstream_index_id"]
        .as_str()
        .expect("index id")
        .to_string();
    // Let the clip play once (24 s) but not loop back into red.
    tokio::time::sleep(Duration::from_secs(23)).await;

    // The scene index names the free-text event in the records of the red
    // part, and only there.
    let scenes = d
        .ok("GET", &format!("rtstream/cam/index/scene/{index}"), None)
        .await;
    let records = scenes["scene_index_records"].as_array().expect("records");
    let (mut red_records, mut other_records) = (0, 0);
    for r in records {
        let (start, end) = (
            r["start"].as_f64().unwrap_or(-1.0),
            r["end"].as_f64().unwrap_or(-1.0),
        );
        let red = r["labels"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|l| l["label"] == "red");
        if start >= 7.9 && end <= 16.1 {
            let best = red.and_then(|l| l["best_score"].as_f64()).unwrap_or(0.0);
            assert!(best > 0.5, "red scene without the label: {r}");
            red_records += 1;
        } else if end < 7.9 || start > 16.1 {
            assert!(red.is_none(), "labelled red outside the red part: {r}");
            other_records += 1;
        }
    }
    assert!(red_records >= 2 && other_records >= 3, "{scenes}");

    let red = d
        .ok(
            "POST",
            "rtstream/cam/search",
            Some(json!({"query": "a red object"})),
        )
        .await;
    eprintln!("search red: {red}");
    assert_eq!(red["results"].as_array().map(Vec::len), Some(1), "{red}");
    near(best_range(&red), (8.0, 15.5), "search 'a red object'");
    assert!(red["results"][0]["score"].as_f64().unwrap_or(0.0) > 0.9);
    assert_eq!(red["results"][0]["text"], "a red object");
    let frames = red["scanned"]["frames"].as_u64().unwrap_or(0);
    assert!(frames >= 40, "about 2 fps for 23 s: {frames}");

    let green = d
        .ok(
            "POST",
            "rtstream/cam/search",
            Some(json!({"query": "something green"})),
        )
        .await;
    let (g0, _) = best_range(&green);
    assert!((g0 - 16.0).abs() <= 1.0, "green from {g0}");
    let purple = d
        .ok(
            "POST",
            "rtstream/cam/search",
            Some(json!({"query": "a purple object"})),
        )
        .await;
    assert_eq!(purple["results"], json!([]), "nothing purple was seen");

    // Backtest a definition, and an event that no alert uses yet.
    let bt = d
        .ok(
            "POST",
            "rtstream/cam/backtest",
            Some(json!({"event_prompt": "a red object", "negatives": ["a blue object"]})),
        )
        .await;
    eprintln!("backtest red: {bt}");
    let occ = bt["occurrences"].as_array().expect("occurrences");
    assert_eq!(occ.len(), 1, "{bt}");
    near(
        (
            occ[0]["start_time"].as_f64().unwrap_or(0.0),
            occ[0]["end_time"].as_f64().unwrap_or(0.0),
        ),
        (8.0, 15.5),
        "backtest 'a red object'",
    );
    assert_eq!(occ[0]["open"], false);
    // A window that opens in the middle of the red part: the frames before
    // it (blue) are the rule's usual level, so the red it opens on is new.
    let mid_red = red["results"][0]["start"].as_f64().expect("start") + 2.0;
    let bt = d
        .ok(
            "POST",
            "rtstream/cam/backtest",
            Some(json!({"event_prompt": "a red object", "from": mid_red})),
        )
        .await;
    let occ = bt["occurrences"].as_array().expect("occurrences");
    assert_eq!(occ.len(), 1, "{bt}");
    let start = occ[0]["start_time"].as_f64().unwrap_or(0.0);
    assert!(
        (9.5..11.0).contains(&start),
        "fires as the window opens: {bt}"
    );
    let ev = d
        .ok(
            "POST",
            "rtstream/event",
            Some(json!({"event_prompt": "a green object", "label": "green"})),
        )
        .await;
    let bt = d
        .ok(
            "POST",
            "rtstream/cam/backtest",
            Some(json!({"event_id": ev["event_id"]})),
        )
        .await;
    let occ = bt["occurrences"].as_array().expect("occurrences");
    assert_eq!(occ.len(), 1, "{bt}");
    let start = occ[0]["start_time"].as_f64().unwrap_or(0.0);
    assert!((start - 16.0).abs() <= 1.0, "green starts {start}");
    // A stricter rule (k = 20 of 20) would never have fired on 8 s of red at 2 fps.
    let strict = d
        .ok(
            "POST",
            "rtstream/cam/backtest",
            Some(json!({"event_prompt": "a red object", "k": 20, "window": 20})),
        )
        .await;
    assert_eq!(strict["occurrences"], json!([]), "{strict}");

    // Prompts over the API: one longer than the context is cut, not refused;
    // an empty one is refused.
    let long = format!("a red object {}", "next to the loading dock ".repeat(40));
    let made = d
        .ok(
            "POST",
            "rtstream/event",
            Some(json!({"event_prompt": long, "label": "long"})),
        )
        .await;
    assert!(made["event_id"].as_str().is_some(), "{made}");

    // Bad input.
    for (path, body, code) in [
        (
            "rtstream/event",
            json!({"event_prompt": "", "label": "x"}),
            422,
        ),
        (
            "rtstream/event",
            json!({"event_prompt": "   ", "label": "x"}),
            422,
        ),
        (
            "rtstream/event",
            json!({"event_prompt": "red", "label": "x", "negatives": [""]}),
            422,
        ),
        ("rtstream/cam/search", json!({"query": ""}), 422),
        ("rtstream/cam/search", json!({"query": 5}), 422),
        (
            "rtstream/cam/search",
            json!({"query": "red", "from": 10, "to": 5}),
            422,
        ),
        (
            "rtstream/cam/search",
            json!({"query": "red", "score_threshold": 2}),
            422,
        ),
        ("rtstream/nope/search", json!({"query": "red"}), 404),
        ("rtstream/cam/backtest", json!({"event_id": "nope"}), 404),
        (
            "rtstream/cam/backtest",
            json!({"event_prompt": "red", "classes": ["x"]}),
            422,
        ),
    ] {
        let (got, v) = d.call("POST", path, Some(body.clone())).await;
        assert_eq!(got, code, "{path} {body}: {v}");
        assert!(v["message"].as_str().is_some_and(|m| !m.is_empty()), "{v}");
    }
    d.stop().await;

    // After a restart the stored frames are still there.
    let cutoff = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let d = Daemon::start(state.path(), &config(&server.url("cam"))).await;
    let red = d
        .ok(
            "POST",
            "rtstream/cam/search",
            Some(json!({"query": "a red object", "to": cutoff})),
        )
        .await;
    near(best_range(&red), (8.0, 15.5), "search after restart");
    d.stop().await;
}
