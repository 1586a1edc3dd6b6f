//! A whole sightline daemon in the test process, with its API on a free
//! loopback port and its state in a directory the test owns.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use sightline::app::{self, Hooks, Summary};
use sightline::config::Config;
use sightline::control::Engine;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub struct Daemon {
    pub base: String,
    pub key: String,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<anyhow::Result<Summary>>>,
    http: reqwest::Client,
}

impl Daemon {
    /// Starts a daemon whose state lives in `state`; `extra` is appended to
    /// the config (streams, events, alerts, sections).
    pub async fn start(state: &Path, extra: &str) -> Daemon {
        Self::start_with(state, extra, None).await
    }

    /// Like [`Daemon::start`], letting API callers add `test:` and `file://`
    /// streams (`[api] allow_local_sources`), as the API tests do.
    pub async fn start_allowing_local_sources(state: &Path, extra: &str) -> Daemon {
        Self::launch(state, extra, None, true).await
    }

    /// Like [`Daemon::start`], with more `[api]` keys (`api_lines`, one per
    /// line).
    pub async fn start_with_api(state: &Path, api_lines: &str, extra: &str) -> Daemon {
        Self::launch_hooked(state, (api_lines, "", extra), false, Hooks::default()).await
    }

    /// Like [`Daemon::start`], with the daemon's clocks given.
    pub async fn start_with_clocks(
        state: &Path,
        extra: &str,
        clocks: Arc<dyn sightline::clock::Clocks>,
    ) -> Daemon {
        let hooks = Hooks {
            clocks: Some(clocks),
            ..Hooks::default()
        };
        Self::launch_hooked(state, ("", "", extra), false, hooks).await
    }

    /// Like [`Daemon::start`], with more `[state]` keys (one per line).
    pub async fn start_with_state(state: &Path, state_lines: &str, extra: &str) -> Daemon {
        Self::launch_hooked(state, ("", state_lines, extra), false, Hooks::default()).await
    }

    /// Like [`Daemon::start`], also handing the engine to `engine`.
    pub async fn start_with(
        state: &Path,
        extra: &str,
        engine: Option<oneshot::Sender<Arc<Engine>>>,
    ) -> Daemon {
        Self::launch(state, extra, engine, false).await
    }

    /// Like [`Daemon::start_allowing_local_sources`], with streams from
    /// `sources` instead of GStreamer.
    pub async fn start_with_sources(
        state: &Path,
        extra: &str,
        sources: Arc<dyn sightline::source::Sources>,
    ) -> Daemon {
        Self::launch_hooked(
            state,
            ("", "", extra),
            true,
            Hooks {
                sources: Some(sources),
                ..Hooks::default()
            },
        )
        .await
    }

    async fn launch(
        state: &Path,
        extra: &str,
        engine: Option<oneshot::Sender<Arc<Engine>>>,
        allow_local_sources: bool,
    ) -> Daemon {
        let hooks = Hooks {
            engine,
            ..Hooks::default()
        };
        Self::launch_hooked(state, ("", "", extra), allow_local_sources, hooks).await
    }

    async fn launch_hooked(
        state: &Path,
        (api_lines, state_lines, extra): (&str, &str, &str),
        allow_local_sources: bool,
        hooks: Hooks,
    ) -> Daemon {
        let text = format!(
            "[runtime]\nworkers = 1\nstats_interval_secs = 0\n\
             [api]\nlisten = \"127.0.0.1:0\"\nws_buffer = 256\n\
             allow_local_sources = {allow_local_sources}\n{api_lines}\n\
             [state]\ndir = \"{}\"\nmin_free_mb = 1\n{state_lines}\n\
             [webhook]\nallow_private = [\"127.0.0.1/32\"]\n{extra}",
            state.display()
        );
        let config = Config::parse(&text, "test").expect("valid config");
        let (bound_tx, bound_rx) = oneshot::channel();
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let hooks = Hooks {
            api_bound: Some(bound_tx),
            ..hooks
        };
        let task = tokio::spawn(app::run(config, hooks, async move {
            let _ = stop_rx.await;
        }));
        let addr = tokio::time::timeout(Duration::from_secs(60), bound_rx)
            .await
            .expect("the API listens within a minute")
            .expect("the daemon reports its API address");
        let key = std::fs::read_to_string(state.join("api-key"))
            .expect("the daemon generated its key")
            .trim()
            .to_string();
        Daemon {
            base: format!("http://{addr}"),
            key,
            stop: Some(stop_tx),
            task: Some(task),
            http: reqwest::Client::new(),
        }
    }

    /// Stops the daemon and returns its summary.
    pub async fn stop(mut self) -> Summary {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        let task = self.task.take().expect("running");
        task.await.expect("joins").expect("the daemon ran cleanly")
    }

    /// An authenticated JSON call; returns the status and the reply body.
    pub async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut req = self
            .http
            .request(
                method.parse().expect("method"),
                format!("{}/{path}", self.base),
            )
            .header("x-access-token", &self.key);
        if let Some(b) = body {
            req = req.json(&b);
        }
        reply(req).await
    }

    /// A call with a raw body and chosen token (None: no header).
    pub async fn raw(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Vec<u8>,
    ) -> (u16, Value) {
        let mut req = self
            .http
            .request(
                method.parse().expect("method"),
                format!("{}/{path}", self.base),
            )
            .header("content-type", "application/json")
            .body(body);
        if let Some(t) = token {
            req = req.header("x-access-token", t);
        }
        reply(req).await
    }

    /// `data` of a call that must succeed.
    pub async fn ok(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let (code, v) = self.call(method, path, body).await;
        assert_eq!(code, 200, "{method} {path}: {v}");
        assert_eq!(v["success"], true);
        v["data"].clone()
    }
}

async fn reply(req: reqwest::RequestBuilder) -> (u16, Value) {
    let resp = req.send().await.expect("the API answers");
    let code = resp.status().as_u16();
    let text = resp.text().await.expect("a body");
    let v = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (code, v)
}
