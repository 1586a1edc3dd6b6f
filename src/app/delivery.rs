//! The delivery side of the daemon: the WebSocket hub and its journal, the
//! webhook and MQTT sinks, the outbox dispatcher, and the recorder with what
//! it adds to messages (evidence capture, signed media links).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Context};

use crate::alert::guard::Guard;
use crate::alert::mqtt::MqttSink;
use crate::alert::ws::Hub;
use crate::alert::{webhook::WebhookSink, Dispatcher, OutboxSettings, Sink};
use crate::clock::{Clocks, Steady};
use crate::config::{ApiConfig, Config};
use crate::homeassistant::{SnapshotTopics, StateTopics};
use crate::record::evidence::{Capture, SnapshotSink};
use crate::record::{Recorder, Signer};
use crate::source::tap::Taps;
use crate::store::{JournalLimits, Outbox, Store, StoreJournal};

/// The delivery side: sinks, the outbox dispatcher, the WebSocket hub,
/// and the recorder with what it adds to messages.
pub(super) struct Delivery {
    pub dispatcher: Arc<Dispatcher>,
    pub hub: Arc<Hub>,
    pub mqtt: Option<Arc<MqttSink>>,
    pub recorder: Option<Arc<Recorder>>,
    pub capture: Option<Arc<Capture>>,
    /// Each stream's stream time against wall time (scene stage → media API).
    pub time_bases: Arc<crate::scene::TimeBases>,
    /// The MQTT state topics, with `[mqtt] control` (or discovery) on.
    pub states: Option<Arc<StateTopics>>,
    /// Steady time, shared by the outbox and the recorder; counts steps of
    /// the wall clock.
    pub steady: Arc<Steady>,
}

/// The recorder, when `[recording]` has a directory. Media URLs are signed
/// with a key derived from the API key (a random one without an API: the
/// links then cannot be served anyway) and carry `[api] public_url`.
fn build_recorder(
    config: &Config,
    store: &Arc<Store>,
    api: Option<&(tokio::net::TcpListener, String)>,
    (clocks, steady): (&Arc<dyn Clocks>, &Arc<Steady>),
    mqtt: Option<Arc<MqttSink>>,
    taps: Option<Arc<Taps>>,
) -> anyhow::Result<Option<(Arc<Recorder>, Arc<Capture>)>> {
    let signer = match api {
        Some((_, key)) => Signer::from_api_key(key),
        None => Signer::from_api_key(&uuid::Uuid::new_v4().to_string()),
    };
    let recorder = Recorder::new(
        config.recording.clone(),
        signer,
        Arc::clone(clocks),
        Arc::clone(steady),
        taps,
    );
    let Some(recorder) = recorder else {
        return Ok(None);
    };
    let base = match (config.api.as_ref().and_then(|a| a.public_url.clone()), api) {
        (Some(u), _) => u,
        (None, Some((l, _))) => format!("http://{}", l.local_addr()?),
        (None, None) => String::new(),
    };
    let recorder = Arc::new(recorder);
    let after = crate::record::evidence::spawn_after(Arc::clone(store), recorder.evidence_dir())
        .context("starting the evidence writer")?;
    let capture = Arc::new(Capture {
        recorder: Arc::clone(&recorder),
        base,
        snapshots: mqtt.map(|m| Arc::new(SnapshotTopics(m)) as Arc<dyn SnapshotSink>),
        after,
    });
    Ok(Some((recorder, capture)))
}

pub(super) async fn build_delivery(
    config: &Config,
    store: &Arc<Store>,
    guard: &Arc<Guard>,
    clocks: &Arc<dyn Clocks>,
    api: Option<&(tokio::net::TcpListener, String)>,
    taps: Option<Arc<Taps>>,
) -> anyhow::Result<Delivery> {
    // One steady clock for the outbox and the recorder: a step is noticed
    // (and logged) once.
    let steady = Steady::new(Arc::clone(clocks));
    let webhook = WebhookSink::new(config.webhook.timeout, Arc::clone(guard))
        .context("building the HTTP client")?;
    let mqtt: Option<Arc<MqttSink>> = config.mqtt.as_ref().map(|m| Arc::new(MqttSink::start(m)));
    let settings = OutboxSettings {
        store: Arc::clone(store) as Arc<dyn Outbox>,
        schedule: config.webhook.schedule.clone().into(),
        mqtt_schedule: crate::domain::mqtt_schedule(),
        concurrency: config.webhook.concurrency,
        // Retries are scheduled in steady time: a stepped wall clock
        // neither stalls them (back) nor fires them all at once (forward).
        clock: Arc::clone(&steady) as Arc<dyn Clocks>,
        poll: Duration::from_millis(500),
        max_dead: config.state.max_dead_letters,
    };
    let mq = mqtt.clone().map(|m| m as Arc<dyn Sink>);
    let (api_config, dir) = (config.api.clone(), config.state.dir.clone());
    // Opening the WebSocket journal and starting the dispatcher (it reads
    // the outbox's targets) are SQLite calls: a blocking thread.
    let (dispatcher, hub) = tokio::task::spawn_blocking(move || {
        let hub = Arc::new(hub(api_config.as_ref(), dir.as_deref())?);
        let dispatcher = Dispatcher::start(
            Some(Arc::new(webhook)),
            mq,
            Some(Arc::clone(&hub)),
            settings,
        );
        anyhow::Ok((Arc::new(dispatcher), hub))
    })
    .await
    .map_err(|e| anyhow!("starting delivery: {e}"))??;
    let recording = build_recorder(config, store, api, (clocks, &steady), mqtt.clone(), taps)?;
    let (recorder, capture) = recording.unzip();
    let states = match (&mqtt, &config.mqtt) {
        (Some(sink), Some(m)) if m.control => Some(Arc::new(StateTopics::new(Arc::clone(sink)))),
        _ => None,
    };
    Ok(Delivery {
        states,
        dispatcher,
        hub,
        mqtt,
        recorder,
        capture,
        time_bases: Arc::default(),
        steady,
    })
}

/// The WebSocket hub: with the API, it keeps a journal in the state
/// directory for clients that resume.
fn hub(api: Option<&ApiConfig>, state_dir: Option<&Path>) -> anyhow::Result<Hub> {
    let Some(a) = api else {
        return Ok(Hub::new(256));
    };
    let limits = JournalLimits {
        max_messages: a.ws_resume_messages,
        max_age: a.ws_resume,
    };
    let journal = StoreJournal::open(state_dir, limits)?;
    Hub::with_journal(a.ws_buffer, Arc::new(journal)).context("reading the WebSocket journal")
}
