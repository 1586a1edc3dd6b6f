//! The soak's API churn: what an integrator's backend does to a box over
//! months, compressed. Each step is one call through the VideoDB-shaped API,
//! in a cycle: create an event, wire it to a camera's scene index, disable
//! the alert, enable it, delete the oldest alert, delete the oldest event
//! (two alerts and three events stay alive between cycles).
//! Objects are created and deleted at the same rate, so a flat database is
//! the expected result and growth is a leak.

use std::collections::VecDeque;

use serde_json::{json, Value};

/// Alerts and events the churn keeps alive between cycles (the oldest
/// event's alert is always gone before the event is deleted).
const LIVE_ALERTS: usize = 2;
const LIVE_EVENTS: usize = 3;

/// The churn's state: what it created and has not deleted yet.
pub struct Churn {
    http: reqwest::Client,
    base: String,
    key: String,
    callback: String,
    /// (stream, scene index id) of every camera.
    indexes: Vec<(String, String)>,
    events: VecDeque<String>,
    /// (stream, index, alert id).
    alerts: VecDeque<(String, String, String)>,
    step: u64,
    pub calls: u64,
    pub errors: u64,
    pub last_error: Option<String>,
}

impl Churn {
    /// Churn against the API at `base` (ending in `/`) with the daemon's
    /// `key`, alerts to `callback`.
    pub fn new(base: &str, key: &str, callback: &str) -> Churn {
        Churn {
            http: reqwest::Client::new(),
            base: base.to_string(),
            key: key.to_string(),
            callback: callback.to_string(),
            indexes: Vec::new(),
            events: VecDeque::new(),
            alerts: VecDeque::new(),
            step: 0,
            calls: 0,
            errors: 0,
            last_error: None,
        }
    }

    /// Gives each camera a scene index, which API alerts hang on.
    pub async fn index_cameras(&mut self, streams: &[String]) -> anyhow::Result<()> {
        for s in streams {
            let body = json!({
                "extraction_type": "time",
                "extraction_config": {"time": 2, "frame_count": 5},
                "prompt": "people",
                "name": format!("{s}-soak"),
            });
            let v = self
                .call("POST", &format!("rtstream/{s}/index/scene"), Some(body))
                .await
                .ok_or_else(|| {
                    anyhow::anyhow!(
                        "creating {s}'s scene index failed: {}",
                        self.last_error.clone().unwrap_or_default()
                    )
                })?;
            let id = v["rtstream_index_id"].as_str().unwrap_or_default();
            self.indexes.push((s.clone(), id.to_string()));
        }
        Ok(())
    }

    /// Makes the next call of the cycle.
    pub async fn step(&mut self) {
        let n = self.step;
        self.step += 1;
        match n % 6 {
            0 => self.create_event(n).await,
            1 => self.create_alert(n).await,
            2 => self.set_newest("disable").await,
            3 => self.set_newest("enable").await,
            4 => self.delete_oldest_alert().await,
            _ => self.delete_oldest_event().await,
        }
    }

    async fn create_event(&mut self, n: u64) {
        // Both default models: people on the person detector, cups on the
        // 80-class one.
        let prompt = if n % 12 == 0 {
            "Detect person"
        } else {
            "Detect cup"
        };
        let body = json!({"event_prompt": prompt, "label": format!("churn-{n}")});
        if let Some(v) = self.call("POST", "rtstream/event", Some(body)).await {
            if let Some(id) = v["event_id"].as_str() {
                self.events.push_back(id.to_string());
            }
        }
    }

    async fn create_alert(&mut self, n: u64) {
        let (Some(event), false) = (self.events.back().cloned(), self.indexes.is_empty()) else {
            return;
        };
        let (stream, index) = self.indexes[(n / 6) as usize % self.indexes.len()].clone();
        let body = json!({"event_id": event, "callback_url": self.callback});
        let path = format!("rtstream/{stream}/index/{index}/alert");
        if let Some(v) = self.call("POST", &path, Some(body)).await {
            if let Some(id) = v["alert_id"].as_str() {
                self.alerts.push_back((stream, index, id.to_string()));
            }
        }
    }

    async fn set_newest(&mut self, action: &str) {
        let Some((stream, index, alert)) = self.alerts.back().cloned() else {
            return;
        };
        let path = format!("rtstream/{stream}/index/{index}/alert/{alert}/status");
        self.call("PATCH", &path, Some(json!({"action": action})))
            .await;
    }

    async fn delete_oldest_alert(&mut self) {
        if self.alerts.len() <= LIVE_ALERTS {
            return;
        }
        let Some((stream, index, alert)) = self.alerts.pop_front() else {
            return;
        };
        let path = format!("rtstream/{stream}/index/{index}/alert/{alert}");
        self.call("DELETE", &path, None).await;
    }

    async fn delete_oldest_event(&mut self) {
        if self.events.len() <= LIVE_EVENTS {
            return;
        }
        let Some(event) = self.events.pop_front() else {
            return;
        };
        self.call("DELETE", &format!("rtstream/event/{event}"), None)
            .await;
    }

    /// One call; its `data` when it succeeded, else counts an error.
    async fn call(&mut self, method: &str, path: &str, body: Option<Value>) -> Option<Value> {
        self.calls += 1;
        let url = format!("{}{path}", self.base);
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap_or(reqwest::Method::GET);
        let mut req = self
            .http
            .request(method.clone(), &url)
            .header("x-access-token", &self.key);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let outcome = match req.send().await {
            Ok(r) => {
                let code = r.status();
                let v: Value = r.json().await.unwrap_or(Value::Null);
                if code.is_success() && v["success"] == true {
                    Ok(v["data"].clone())
                } else {
                    Err(format!("{method} {path}: {code} {v}"))
                }
            }
            Err(e) => Err(format!("{method} {path}: {e}")),
        };
        match outcome {
            Ok(v) => Some(v),
            Err(e) => {
                self.errors += 1;
                self.last_error = Some(e);
                None
            }
        }
    }
}
