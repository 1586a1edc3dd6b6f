//! `sightline demo`: the whole data path on bundled media, with no camera,
//! broker or config. A local RTSP server plays a clip made from public-domain
//! stills (coffee, then an astronaut, then a cat); the daemon watches it with
//! the default models, the person detector for "Detect person" and the
//! 80-class COCO detector for "Detect cup", and a local webhook receiver
//! prints each alert as it arrives, with the model that fired and its latency.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;

use super::rtsp_server::RtspServer;
use super::webhooks::{latency_ms, Webhooks};
use crate::app::{self, Hooks, Summary};
use crate::config::Config;

/// The bundled demo clip: 18 s at 640×480, H.264 (see tests/media/PROVENANCE.md).
pub const DEMO_CLIP: &[u8] = include_bytes!("../../tests/media/demo.mp4");
/// Length of the demo clip in seconds.
pub const DEMO_SECONDS: u64 = 18;

/// The embedded configuration; `{url}` and `{callback}` are filled in.
pub const DEMO_CONFIG: &str = r#"
[runtime]
workers = 1

[[streams]]
id = "demo"
url = "{url}"
fps = 2

[[events]]
id = "person"
prompt = "Detect person"
label = "person_alert"
min_confidence = 0.5
cooldown_secs = 2

[[events]]
id = "cup"
prompt = "Detect cup"
label = "cup_alert"
cooldown_secs = 2

[[alerts]]
id = "demo-webhook"
event = "person"
callback_url = "{callback}"

[[alerts]]
id = "demo-cup"
event = "cup"
callback_url = "{callback}"

# The demo's receiver runs on this machine.
[webhook]
allow_private = ["127.0.0.1/32"]
"#;

/// Runs the demo; `seconds` is how long to watch (default: one pass of the clip).
pub async fn run(seconds: Option<u64>) -> anyhow::Result<Summary> {
    let dir = std::env::temp_dir().join(format!("sightline-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let clip: PathBuf = dir.join("demo.mp4");
    std::fs::write(&clip, DEMO_CLIP).with_context(|| format!("writing {}", clip.display()))?;
    let server = RtspServer::serve_files(0, &[("demo", &clip)]).map_err(|e| anyhow::anyhow!(e))?;
    let mut hook = Webhooks::start().await?;
    let callback = hook.url.clone();
    let text = DEMO_CONFIG
        .replace("{url}", &server.url("demo"))
        .replace("{callback}", &callback);
    let config = Config::parse(&text, "embedded demo config")?;

    println!("sightline demo");
    println!(
        "  camera : {} (bundled clip: 6 s coffee, 6 s astronaut, 6 s cat)",
        server.url("demo")
    );
    println!("  models : person = ssdlite-person (SSDLite-MobileNetV2, 1 class), coco = centernet-coco (CenterNet, 80 classes)");
    println!("  events : \"Detect person\" -> person_alert, \"Detect cup\" -> cup_alert (each routed to a model)");
    println!("  webhook: {callback}");
    println!(
        "  watching for {} s ...",
        seconds.unwrap_or(DEMO_SECONDS - 1)
    );

    let printer = tokio::spawn(async move {
        let mut n = 0;
        while let Some((b, at)) = hook.rx.recv().await {
            n += 1;
            let latency = latency_ms(&b, at).map_or("?".into(), |l| format!("{l:.0} ms"));
            println!(
                "  webhook <- {:5} {} (model {}) confidence {:.2}  stream time {:.1}-{:.1} s  \"{}\"  latency {latency}",
                b["phase"].as_str().unwrap_or("?"),
                b["label"].as_str().unwrap_or("?"),
                b["model"].as_str().unwrap_or("?"),
                b["confidence"].as_f64().unwrap_or(0.0),
                b["start_time"].as_f64().unwrap_or(0.0),
                b["end_time"].as_f64().unwrap_or(0.0),
                b["explanation"].as_str().unwrap_or(""),
            );
        }
        n
    });
    // One pass: stop just before the clip ends (and the server hangs up);
    // the end message went out 2 s after the astronaut left, at about 14 s.
    let watch = Duration::from_secs(seconds.unwrap_or(DEMO_SECONDS - 1));
    let stop = async move {
        tokio::select! {
            _ = tokio::time::sleep(watch) => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    };
    let summary = app::run(config, Hooks::default(), stop).await;
    drop(server);
    printer.abort();
    let _ = std::fs::remove_dir_all(&dir);
    let summary = summary?;
    println!(
        "  done: {} frames scored (mean {:.1} ms each), {} occurrence messages, {} delivered, {} dropped frames",
        summary.scored,
        summary.mean_inference_ms,
        summary.occurrences,
        summary.delivered,
        summary.dropped_full + summary.dropped_stale
    );
    Ok(summary)
}
