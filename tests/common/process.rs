//! `sightline run` as a process of its own (so a test can SIGKILL it), its
//! log kept for the test to search and print when something fails.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;

pub struct Proc {
    pub base: String,
    pub key: String,
    pub log: Arc<Mutex<Vec<String>>>,
    config: PathBuf,
    child: Option<Child>,
    http: reqwest::Client,
}

impl Proc {
    /// Starts `sightline run --config config` with its state in `state`.
    pub fn start(config: &Path, state: &Path) -> Proc {
        let mut p = Proc {
            base: String::new(),
            key: String::new(),
            log: Arc::default(),
            config: config.to_path_buf(),
            child: None,
            http: reqwest::Client::new(),
        };
        p.spawn(state);
        p
    }

    fn spawn(&mut self, state: &Path) {
        let mut child = Command::new(env!("CARGO_BIN_EXE_sightline"))
            .args(["run", "--config"])
            .arg(&self.config)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("daemon starts");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = std::sync::mpsc::channel();
        let log = Arc::clone(&self.log);
        std::thread::spawn(move || {
            let mut sent = false;
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if !sent && line.contains("API listening") {
                    if let Some(addr) = line.split("addr=").nth(1) {
                        let addr = addr.split_whitespace().next().unwrap_or("").to_string();
                        let _ = tx.send(addr);
                        sent = true;
                    }
                }
                if let Ok(mut l) = log.lock() {
                    l.push(line);
                }
            }
        });
        let addr = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("the daemon logs its API address");
        self.base = format!("http://{addr}");
        self.key = std::fs::read_to_string(state.join("api-key"))
            .expect("the daemon wrote its key")
            .trim()
            .to_string();
        self.child = Some(child);
    }

    /// Starts it again on the same config and state.
    pub fn restart(&mut self, state: &Path) {
        self.spawn(state);
    }

    /// SIGKILL: no shutdown, as in a power cut.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SAFETY: kill(2) on our own child's pid.
            unsafe {
                libc::kill(c.id() as i32, libc::SIGTERM);
            }
            let _ = c.wait();
        }
    }

    /// The log lines so far that contain `needle`.
    pub fn logged(&self, needle: &str) -> Vec<String> {
        self.log
            .lock()
            .map(|l| l.iter().filter(|x| x.contains(needle)).cloned().collect())
            .unwrap_or_default()
    }

    /// Calls the API; (status, JSON body or Null).
    pub async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let m = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut r = self
            .http
            .request(m, format!("{}/{path}", self.base))
            .header("x-access-token", &self.key)
            .timeout(Duration::from_secs(20));
        if let Some(b) = body {
            r = r.json(&b);
        }
        match r.send().await {
            Ok(resp) => {
                let code = resp.status().as_u16();
                (code, resp.json().await.unwrap_or(Value::Null))
            }
            Err(_) => (0, Value::Null),
        }
    }
}

impl Proc {
    /// A GET whose reply is text (`metrics`).
    pub async fn text(&self, path: &str) -> String {
        let r = self
            .http
            .get(format!("{}/{path}", self.base))
            .header("x-access-token", &self.key)
            .send()
            .await
            .expect("the API answers");
        r.text().await.expect("a text body")
    }

    /// `data` of a call that must succeed.
    pub async fn ok(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let (code, v) = self.call(method, path, body).await;
        assert_eq!(code, 200, "{method} {path}: {v}");
        v["data"].clone()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}
