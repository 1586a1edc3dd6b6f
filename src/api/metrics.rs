//! `GET /metrics`: every counter and latency histogram of the daemon in the
//! Prometheus text format, read at scrape time from the stages that keep
//! them. The key is required unless `[api] metrics_public = true`.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};

use super::conns::ConnStats;
use super::ApiState;
use crate::control::Engine;
use crate::metrics::text::Exposition;
use crate::metrics::Snapshot;

/// The exposition format's content type.
const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

pub async fn metrics(
    State(st): State<ApiState>,
    conns: Option<axum::Extension<Arc<ConnStats>>>,
) -> Response {
    let engine = Arc::clone(&st.engine);
    let conns = conns.map(|axum::Extension(c)| c);
    // The outbox counts are a query: off the async threads.
    let text = tokio::task::spawn_blocking(move || {
        let mut x = Exposition::default();
        latencies(&mut x, &engine);
        frames(&mut x, &engine);
        delivery(&mut x, &engine);
        connections(&mut x, &engine, conns.as_deref());
        x.render()
    })
    .await
    .unwrap_or_else(|e| format!("# metrics failed: {e}\n"));
    ([(header::CONTENT_TYPE, CONTENT_TYPE)], text).into_response()
}

/// A target's kind from its worker's name (`webhook …`, `mqtt …`).
fn kind(target: &str) -> &str {
    target.split(' ').next().unwrap_or("other")
}

/// Per-stage latency histograms.
fn latencies(x: &mut Exposition, e: &Engine) {
    let p = e.parts();
    let pool = &p.pool;
    x.histogram(
        "sightline_queue_wait_seconds",
        "Time frames waited in the inference queue.",
        &[],
        &pool.queue_wait.snapshot(),
    );
    let models = e.models();
    for (i, snap) in pool.inference_times() {
        let name = models.all().get(i).map_or("?", |m| &*m.name);
        x.histogram(
            "sightline_inference_seconds",
            "Time one model took on one frame.",
            &[("model", name)],
            &snap,
        );
    }
    x.histogram(
        "sightline_match_seconds",
        "From the end of inference to the frame matched against every event.",
        &[],
        &p.match_times.snapshot(),
    );
    x.histogram(
        "sightline_outbox_commit_seconds",
        "Outbox transactions, fsync included.",
        &[],
        &e.dispatcher().commit_times().snapshot(),
    );
    let mut by_kind: BTreeMap<String, Snapshot> = BTreeMap::new();
    for (name, t) in e.dispatcher().stats() {
        by_kind
            .entry(kind(&name).to_string())
            .or_default()
            .add(&t.attempt_times.snapshot());
    }
    for (kind, snap) in &by_kind {
        x.histogram(
            "sightline_delivery_seconds",
            "Delivery attempts (webhook POST, MQTT publish and ack), whatever the outcome.",
            &[("kind", kind)],
            snap,
        );
    }
}

/// Frames per stream: in, scored, skipped, dropped; streams up and restarts.
fn frames(x: &mut Exposition, e: &Engine) {
    let pool = e.pool();
    for (id, s) in e.stream_stats() {
        let l = [("stream", id.as_str())];
        x.counter(
            "sightline_frames_total",
            "Sampled frames handed to the inference pool.",
            &l,
            s.frames.load(Relaxed) as f64,
        );
        x.counter(
            "sightline_keyframes_undecoded_total",
            "Keyframes the compressed-domain gate left undecoded: the bitstream was as quiet as a still scene; the last results stood for them.",
            &l,
            s.undecoded.load(Relaxed) as f64,
        );
        x.counter(
            "sightline_stream_restarts_total",
            "Pipeline rebuilds after a failure or stall.",
            &l,
            s.restarts.load(Relaxed) as f64,
        );
        x.counter(
            "sightline_pipelines_abandoned_total",
            "Pipelines whose teardown hung (a GStreamer deadlock) and were left behind.",
            &l,
            s.abandoned.load(Relaxed) as f64,
        );
        x.gauge(
            "sightline_stream_up",
            "1 while the stream delivers frames.",
            &l,
            f64::from(u8::from(e.health(id.as_str()).up)),
        );
    }
    let models = e.models();
    for (stream, i, c) in pool.all_stream_models() {
        let model = models.all().get(i).map_or("?", |m| &*m.name);
        let l = [("stream", stream.as_str()), ("model", model)];
        x.counter(
            "sightline_frames_scored_total",
            "Frames a model scored.",
            &l,
            c.frames as f64,
        );
        x.counter(
            "sightline_frames_skipped_no_motion_total",
            "Frames not scored because nothing moved; the last results stood for them.",
            &l,
            c.skipped as f64,
        );
    }
    for (stream, d) in pool.drops_by_reason() {
        for (reason, n) in [("queue_full", d.queue_full), ("stale", d.stale)] {
            x.counter(
                "sightline_frames_dropped_total",
                "Frames shed by the inference pool, by reason.",
                &[("stream", stream.as_str()), ("reason", reason)],
                n as f64,
            );
        }
    }
    x.gauge(
        "sightline_pool_workers",
        "Inference worker threads.",
        &[],
        pool.workers.load(Relaxed) as f64,
    );
    x.counter(
        "sightline_pool_busy_seconds_total",
        "Time the workers spent in models (utilisation: its rate over the workers).",
        &[],
        pool.inference_us.load(Relaxed) as f64 / 1e6,
    );
    x.gauge(
        "sightline_pool_queue_depth",
        "Frames waiting for a worker.",
        &[],
        e.parts().submitter.queued() as f64,
    );
}

/// The outbox, the spill and the targets.
fn delivery(x: &mut Exposition, e: &Engine) {
    let d = e.dispatcher();
    match d.outbox_depth() {
        Ok(rows) => {
            for (target, live, dead) in rows {
                let l = [("target", target.as_str())];
                x.gauge(
                    "sightline_outbox_depth",
                    "Messages waiting in the outbox.",
                    &l,
                    live as f64,
                );
                x.gauge(
                    "sightline_outbox_dead_letters",
                    "Messages kept as dead letters.",
                    &l,
                    dead as f64,
                );
            }
        }
        Err(err) => tracing::warn!(error = %format!("{err:#}"), "metrics: cannot count the outbox"),
    }
    x.gauge(
        "sightline_outbox_spill_held",
        "Messages held in memory because the outbox could not commit (full disk).",
        &[],
        d.spilled() as f64,
    );
    let spill = d.spill_stats();
    x.counter(
        "sightline_outbox_spilled_total",
        "Messages ever held in memory for a full disk.",
        &[],
        spill.spilled.load(Relaxed) as f64,
    );
    for (name, t) in d.stats() {
        let kind = kind(&name);
        for (outcome, n) in [
            ("delivered", t.delivered.load(Relaxed)),
            ("retried", t.retries.load(Relaxed)),
            ("failed", t.failed.load(Relaxed)),
        ] {
            x.counter(
                "sightline_deliveries_total",
                "Delivery attempts by target and outcome.",
                &[("kind", kind), ("target", &name), ("outcome", outcome)],
                n as f64,
            );
        }
    }
}

/// WebSocket clients, API connections, the state disk.
fn connections(x: &mut Exposition, e: &Engine, conns: Option<&ConnStats>) {
    let ws = e.hub().stats();
    x.gauge(
        "sightline_websocket_clients",
        "Connected WebSocket clients.",
        &[],
        ws.connected as f64,
    );
    x.counter(
        "sightline_websocket_messages_total",
        "Messages queued to WebSocket clients.",
        &[],
        ws.sent as f64,
    );
    x.counter(
        "sightline_websocket_disconnects_total",
        "WebSocket clients cut off for falling behind.",
        &[("reason", "slow")],
        ws.slow_disconnects as f64,
    );
    x.counter(
        "sightline_websocket_refused_total",
        "WebSocket clients turned away at the cap.",
        &[],
        ws.refused as f64,
    );
    if let Some(c) = conns {
        for (what, n) in [
            ("accepted", &c.accepted),
            ("evicted", &c.evicted),
            ("refused", &c.refused),
        ] {
            x.counter(
                "sightline_api_connections_total",
                "API connections by what happened to them.",
                &[("outcome", what)],
                n.load(Relaxed) as f64,
            );
        }
    }
    if let Some(free) = e.space().and_then(|w| w.check().free_mb) {
        x.gauge(
            "sightline_state_disk_free_bytes",
            "Free space where the state database lives.",
            &[],
            free * 1e6,
        );
    }
    let clock = e.parts().steady.jumps();
    x.counter(
        "sightline_clock_jumps_total",
        "Steps of the wall clock (over 2 s) seen since the start; alert timestamps follow them.",
        &[],
        clock.jumps as f64,
    );
    x.gauge(
        "sightline_clock_offset_seconds",
        "How far the wall clock is from steady time after its steps.",
        &[],
        clock.offset_ms as f64 / 1000.0,
    );
    if let Some(site) = e.site() {
        fleet(x, &site.report());
        for (name, help, h) in site.histograms() {
            x.histogram(name, help, &[], &h);
        }
    }
}

/// A site's figures (`[fleet]`), from the report `GET fleet` shows.
fn fleet(x: &mut Exposition, r: &serde_json::Value) {
    let n = |v: &serde_json::Value| v.as_f64().unwrap_or(0.0);
    let c = &r["counters"];
    for (name, help, v) in [
        (
            "sightline_fleet_moves_total",
            "Cameras this box handed over or took from a silent box.",
            &c["moves"],
        ),
        (
            "sightline_fleet_claims_total",
            "Camera leases this box created.",
            &c["claims"],
        ),
        (
            "sightline_fleet_lease_renewals_total",
            "Camera leases this box renewed.",
            &c["renewals"],
        ),
        (
            "sightline_fleet_conflicts_total",
            "Catalog writes refused because another box changed the row first (409).",
            &c["conflicts"],
        ),
        (
            "sightline_fleet_alerts_handed_total",
            "Alert messages this box handed from its outbox to the site's stream.",
            &r["delivery"]["handed"],
        ),
        (
            "sightline_fleet_alerts_fallback_total",
            "Alert messages the site's stream could not take, delivered by this box itself.",
            &r["delivery"]["fallbacks"],
        ),
        (
            "sightline_fleet_alerts_delivered_total",
            "Alert messages this box took from the site's stream and delivered.",
            &r["delivery"]["delivered"],
        ),
        (
            "sightline_fleet_alerts_redelivered_total",
            "Alert messages this box took after another box had taken them (a box died or was slow).",
            &r["delivery"]["redelivered"],
        ),
    ] {
        x.counter(name, help, &[], n(v));
    }
    let len = |v: &serde_json::Value| v.as_array().map_or(0, Vec::len) as f64;
    x.gauge(
        "sightline_fleet_boxes",
        "Live boxes of the site, this one included.",
        &[],
        len(&r["boxes"]),
    );
    x.gauge(
        "sightline_fleet_unplaced_streams",
        "Cameras that fit on no box of the site.",
        &[],
        len(&r["unplaced"]),
    );
    x.gauge(
        "sightline_fleet_consumer_pending",
        "Alert messages in the site's stream that no box has taken yet (consumer lag).",
        &[],
        n(&r["delivery"]["consumer_pending"]),
    );
    let up = r["nats"]["connected"].as_bool().unwrap_or(false);
    x.gauge(
        "sightline_fleet_nats_connected",
        "1 while this box reaches the site's NATS servers.",
        &[],
        f64::from(u8::from(up)),
    );
}
