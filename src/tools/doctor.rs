//! `sightline doctor`: checks what a new install most often gets wrong,
//! one finding per check, each failure with the fix. It reads the config
//! the daemon would (or, without one, checks the default model), loads
//! GStreamer and ONNX Runtime in this process, and opens a connection to
//! each camera and the broker; it changes nothing but a probe file in the
//! state directory, which it removes.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;

use crate::config::Config;
use crate::domain::SourceUrl;

/// How long a camera or the broker may take to answer.
const REACH_TIMEOUT: Duration = Duration::from_secs(3);

/// GStreamer elements the daemon builds pipelines from, and the Debian
/// package each comes in.
const ELEMENTS: &[(&str, &str)] = &[
    ("queue", "libgstreamer1.0-0"),
    ("tee", "libgstreamer1.0-0"),
    ("filesrc", "libgstreamer1.0-0"),
    ("appsink", "gstreamer1.0-plugins-base"),
    ("appsrc", "gstreamer1.0-plugins-base"),
    ("videoconvert", "gstreamer1.0-plugins-base"),
    ("videoscale", "gstreamer1.0-plugins-base"),
    ("decodebin", "gstreamer1.0-plugins-base"),
    ("rtspsrc", "gstreamer1.0-plugins-good"),
    ("rtph264depay", "gstreamer1.0-plugins-good"),
    ("qtdemux", "gstreamer1.0-plugins-good"),
    ("splitmuxsink", "gstreamer1.0-plugins-good"),
    ("mp4mux", "gstreamer1.0-plugins-good"),
    ("h264parse", "gstreamer1.0-plugins-bad"),
    ("mpegtsmux", "gstreamer1.0-plugins-bad"),
    ("avdec_h264", "gstreamer1.0-libav"),
];

/// One check's outcome.
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    pub check: String,
    pub ok: bool,
    pub detail: String,
    /// What to do about a failure.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

impl Finding {
    fn ok(check: impl Into<String>, detail: impl Into<String>) -> Finding {
        Finding {
            check: check.into(),
            ok: true,
            detail: detail.into(),
            fix: None,
        }
    }

    fn fail(
        check: impl Into<String>,
        detail: impl Into<String>,
        fix: impl Into<String>,
    ) -> Finding {
        Finding {
            check: check.into(),
            ok: false,
            detail: detail.into(),
            fix: Some(fix.into()),
        }
    }

    /// `ok   check: detail`, or `FAIL check: detail; fix: …`.
    pub fn line(&self) -> String {
        match &self.fix {
            None => format!("ok    {}: {}", self.check, self.detail),
            Some(fix) => format!("FAIL  {}: {}; fix: {fix}", self.check, self.detail),
        }
    }
}

/// Runs every check against the config at `path` (the default model alone
/// when there is no file there).
pub fn run(path: &Path) -> Vec<Finding> {
    let mut out = vec![gstreamer()];
    let config = match config(path) {
        Ok((config, finding)) => {
            out.push(finding);
            config
        }
        Err(finding) => {
            out.push(finding);
            return out;
        }
    };
    let ort = onnx_runtime(&config);
    let ort_ok = ort.ok;
    out.push(ort);
    out.extend(models(&config, ort_ok));
    out.extend(config.streams.iter().map(|s| camera(s.id.as_str(), &s.url)));
    if let Some(m) = &config.mqtt {
        out.push(broker(&m.host, m.port));
    }
    if let Some(f) = &config.fleet {
        out.push(fleet(f));
    }
    if config.api.is_some() || config.state.dir.is_some() {
        let dir = config
            .state
            .dir
            .clone()
            .unwrap_or_else(super::client::default_state_dir);
        out.push(state_dir(&dir));
    }
    out
}

fn gstreamer() -> Finding {
    if let Err(e) = gstreamer::init() {
        return Finding::fail(
            "gstreamer",
            format!("GStreamer does not start: {e}"),
            "apt-get install libgstreamer1.0-0 gstreamer1.0-plugins-base",
        );
    }
    let missing: Vec<&(&str, &str)> = ELEMENTS
        .iter()
        .filter(|(e, _)| gstreamer::ElementFactory::find(e).is_none())
        .collect();
    if missing.is_empty() {
        return Finding::ok(
            "gstreamer",
            format!(
                "{}, all {} elements present",
                gstreamer::version_string(),
                ELEMENTS.len()
            ),
        );
    }
    let names: Vec<&str> = missing.iter().map(|(e, _)| *e).collect();
    let mut packages: Vec<&str> = missing.iter().map(|(_, p)| *p).collect();
    packages.dedup();
    let mut fix = format!("apt-get install {}", packages.join(" "));
    let hidden: Vec<String> = ["GST_PLUGIN_PATH", "GST_PLUGIN_SYSTEM_PATH"]
        .iter()
        .filter(|v| std::env::var_os(v).is_some())
        .map(|v| v.to_string())
        .collect();
    if !hidden.is_empty() {
        fix += &format!(" (or unset {}, which may hide them)", hidden.join(" and "));
    }
    Finding::fail(
        "gstreamer",
        format!(
            "missing element(s) {} from {}",
            names.join(", "),
            packages.join(", ")
        ),
        fix,
    )
}

/// The config at `path`; with no file there, the built-in defaults (the
/// default model, no cameras) so the rest can still be checked.
fn config(path: &Path) -> Result<(Config, Finding), Finding> {
    if !path.exists() {
        let defaults = Config::parse("", "defaults").map_err(|e| {
            Finding::fail(
                "config",
                e.to_string(),
                "report this: the defaults do not parse",
            )
        })?;
        let f = Finding::fail(
            "config",
            format!("{} does not exist (checked the default model only)", path.display()),
            "install -Dm640 systemd/sightline.example.toml /etc/sightline/sightline.toml, or pass --config FILE",
        );
        return Ok((defaults, f));
    }
    match Config::load(path) {
        Ok(c) => {
            let detail = format!(
                "{}: {} stream(s), {} event(s), {} alert(s)",
                path.display(),
                c.streams.len(),
                c.events.len(),
                c.alerts.len()
            );
            Ok((c, Finding::ok("config", detail)))
        }
        Err(e) => Err(Finding::fail(
            "config",
            e.to_string().trim_end().replace('\n', "; "),
            format!(
                "correct the file; `sightline check-config {}` lists each problem",
                path.display()
            ),
        )),
    }
}

fn onnx_runtime(config: &Config) -> Finding {
    match crate::model::init_runtime(config.runtime.ort_library.as_deref()) {
        Ok(_) => {
            let lib = crate::model::runtime_library()
                .map_or_else(|| "loaded".to_string(), |p| p.display().to_string());
            Finding::ok("onnx runtime", lib)
        }
        Err(e) => Finding::fail(
            "onnx runtime",
            e.to_string(),
            format!(
                "install the sightline package (it ships {} in /usr/lib/sightline), run scripts/setup, or set [runtime] ort_library",
                crate::model::ORT_LIB_NAME
            ),
        ),
    }
}

/// Each model folder: its manifest, its files, one inference on a black frame.
fn models(config: &Config, ort_ok: bool) -> Vec<Finding> {
    config
        .models
        .iter()
        .map(|m| {
            let check = format!("model {}", m.name);
            if !ort_ok {
                return Finding::fail(check, "not checked", "fix ONNX Runtime first");
            }
            let mut one = config.clone();
            one.models = vec![m.clone()];
            one.events.clear();
            let loaded = crate::app::compile(&one, None)
                .and_then(|(models, _)| crate::app::probe(&one, &models).map(|()| models));
            match loaded {
                Ok(models) => {
                    let what = models
                        .all()
                        .first()
                        .map(|l| {
                            let m = &l.manifest;
                            format!("{} loads and runs ({})", m.dir.display(), m.precision.name())
                        })
                        .unwrap_or_default();
                    Finding::ok(check, what)
                }
                Err(e) => Finding::fail(
                    check,
                    format!("{e:#}"),
                    "copy the model folder again (the package's are in /usr/share/sightline/models), or export it again (models/*/export*.py)",
                ),
            }
        })
        .collect()
}

/// A camera: an RTSP server that answers OPTIONS, or a file that exists.
fn camera(id: &str, url: &SourceUrl) -> Finding {
    let check = format!("camera {id}");
    match url {
        SourceUrl::Test(p) => Finding::ok(check, format!("test pattern {p}")),
        SourceUrl::File(p) if p.is_file() => Finding::ok(check, format!("{} exists", p.display())),
        SourceUrl::File(p) => Finding::fail(
            check,
            format!("{} is not a readable file", p.display()),
            "correct the stream's url",
        ),
        SourceUrl::Rtsp(u) => match rtsp_options(u) {
            Ok(status) => Finding::ok(check, format!("{} answers: {status}", redact(u))),
            Err(e) => Finding::fail(
                check,
                format!("{}: {e}", redact(u)),
                "check the camera is powered and on the network, and the url, port and path (try it in VLC)",
            ),
        },
    }
}

/// The URL without a password.
fn redact(u: &str) -> String {
    match url::Url::parse(u) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        _ => u.to_string(),
    }
}

/// Sends RTSP OPTIONS and returns the status line.
fn rtsp_options(u: &str) -> Result<String, String> {
    let parsed = url::Url::parse(u).map_err(|e| format!("not a URL: {e}"))?;
    let host = parsed.host_str().ok_or("no host")?;
    let port = parsed.port().unwrap_or(554);
    let mut s = connect(host, port)?;
    let request =
        format!("OPTIONS {u} RTSP/1.0\r\nCSeq: 1\r\nUser-Agent: sightline-doctor\r\n\r\n");
    s.write_all(request.as_bytes()).map_err(|e| e.to_string())?;
    let mut buf = [0u8; 256];
    let n = s.read(&mut buf).map_err(|e| format!("no answer: {e}"))?;
    let text = String::from_utf8_lossy(&buf[..n]);
    let status = text.lines().next().unwrap_or("").trim().to_string();
    if status.starts_with("RTSP/1.0") {
        Ok(status)
    } else {
        Err(format!("not an RTSP server (answered {status:?})"))
    }
}

fn connect(host: &str, port: u16) -> Result<TcpStream, String> {
    let addr = (host, port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {host}: {e}"))?
        .next()
        .ok_or_else(|| format!("{host} has no address"))?;
    let s = TcpStream::connect_timeout(&addr, REACH_TIMEOUT)
        .map_err(|e| format!("cannot connect to {addr}: {e}"))?;
    let _ = s.set_read_timeout(Some(REACH_TIMEOUT));
    let _ = s.set_write_timeout(Some(REACH_TIMEOUT));
    Ok(s)
}

/// The site's NATS servers: reachable, credentials accepted, JetStream on.
fn fleet(f: &crate::config::FleetConfig) -> Finding {
    let probed = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())
        .and_then(|rt| rt.block_on(crate::fleet::probe(f)));
    match probed {
        Ok(detail) => Finding::ok("fleet (NATS)", detail),
        Err(e) => Finding::fail(
            "fleet (NATS)",
            e,
            "check [fleet] nats, that the servers run with JetStream, and the credentials file (owner-only, user:password or an nkey seed)",
        ),
    }
}

fn broker(host: &str, port: u16) -> Finding {
    match connect(host, port) {
        Ok(_) => Finding::ok("mqtt broker", format!("{host}:{port} accepts connections")),
        Err(e) => Finding::fail(
            "mqtt broker",
            e,
            "start the broker (systemctl start mosquitto) or correct [mqtt] host and port",
        ),
    }
}

fn state_dir(dir: &PathBuf) -> Finding {
    let probe = dir.join(format!(".doctor-{}", std::process::id()));
    let wrote = std::fs::create_dir_all(dir).and_then(|()| std::fs::write(&probe, b"probe"));
    let _ = std::fs::remove_file(&probe);
    match wrote {
        Ok(()) => Finding::ok("state dir", format!("{} is writable", dir.display())),
        Err(e) => Finding::fail(
            "state dir",
            format!("{}: {e}", dir.display()),
            format!(
                "make it the daemon's: chown -R sightline:sightline {} (the package does this), or set [state] dir",
                dir.display()
            ),
        ),
    }
}
