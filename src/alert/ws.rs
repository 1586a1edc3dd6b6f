//! WebSocket fan-out to connected clients, with resume.
//!
//! Each connection has a bounded queue. Publishing never waits: when a
//! client's queue is full the client is cut off (its writer is told to drop
//! the socket) and counted, so one client that stops reading costs the
//! others nothing.
//!
//! Every message gets a `seq`, one counter per daemon that only grows (it
//! continues from the journal after a restart), and with a [`Journal`] it
//! is written there before it is queued, whether or not its connection is
//! open. A client that reconnects under its old connection id with the last
//! `seq` it read is sent what it missed from the journal, then live
//! messages, with no gap and no duplicate; if the journal no longer holds
//! everything after that `seq`, it is told so first. A plain connection
//! (VideoDB's SDK) behaves as before: at most once.
//!
//! In a site (`[fleet]`), the hub hands every message to a [`SiteFeed`]
//! instead: one replicated stream in which every box's messages get one
//! order, and every box's hub takes them back with the stream's sequence
//! as their `seq` ([`Hub::deliver_site`]). So a client on any box gets the
//! alerts of every box, and resumes on another box from the same `seq`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde::Serialize;
use tokio::sync::{mpsc, Notify};

pub use crate::store::{Journal, Missed};

/// A message on its way to a client: its `seq` and its JSON text.
pub type Queued = (u64, Arc<str>);

/// What a connection's writer task holds.
pub struct Subscription {
    pub connection_id: String,
    pub rx: mpsc::Receiver<Queued>,
    /// Fires when the hub cuts the client off.
    pub cut: Arc<Notify>,
}

struct Conn {
    tx: mpsc::Sender<Queued>,
    cut: Arc<Notify>,
}

/// Why a resume was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResumeError {
    #[error("connection {0:?} is already open; close it before resuming it")]
    Open(String),
    #[error("this daemon keeps no WebSocket journal, so it cannot resume")]
    NoJournal,
    #[error(
        "{} WebSocket clients are connected, the most allowed; try again later",
        MAX_CLIENTS
    )]
    Full,
    #[error("reading the WebSocket journal: {0}")]
    Journal(String),
}

/// Counters of the hub.
#[derive(Debug, Default, Serialize)]
pub struct HubStats {
    pub connected: usize,
    /// Clients turned away because [`MAX_CLIENTS`] were connected.
    pub refused: u64,
    pub sent: u64,
    pub slow_disconnects: u64,
}

/// All live WebSocket connections.
pub struct Hub {
    conns: Mutex<HashMap<String, Conn>>,
    /// Console connections (every alert message goes to each), with when
    /// each was last opened; kept while closed so that they can resume.
    consoles: Mutex<HashMap<String, std::time::Instant>>,
    buffer: usize,
    seq: AtomicU64,
    journal: Option<Arc<dyn Journal>>,
    sent: AtomicU64,
    slow_disconnects: AtomicU64,
    refused: AtomicU64,
    /// The site's feed, once the box joined a site.
    site: std::sync::OnceLock<Arc<dyn SiteFeed>>,
}

/// Where a hub in a site sends its messages, so that every box's hub gets
/// them back in one order.
pub trait SiteFeed: Send + Sync {
    /// Takes one message for the site, `to` one connection (None: every
    /// console feed); false when the site cannot take it now (the hub then
    /// sends it to this box's clients only).
    fn offer(&self, to: Option<&str>, channel: &str, data: &serde_json::Value) -> bool;
}

/// The journal's name for console messages that came from a site (one
/// row per message, whatever the number of console feeds).
pub const SITE_CONSOLE: &str = "_console";

/// Most console feeds remembered; beyond that the one opened longest ago
/// is forgotten (a resume of it is then told of a gap).
pub const MAX_CONSOLES: usize = 32;

/// Most WebSocket clients at once: each holds a socket and a queue, and
/// they no longer count against the API's connection cap once upgraded.
pub const MAX_CLIENTS: usize = 256;

#[derive(Serialize)]
struct Envelope<'a, T: Serialize> {
    seq: u64,
    channel: &'a str,
    data: &'a T,
}

impl Hub {
    /// A hub whose clients may fall `buffer` messages behind.
    pub fn new(buffer: usize) -> Hub {
        Hub {
            conns: Mutex::new(HashMap::new()),
            consoles: Mutex::new(HashMap::new()),
            buffer: buffer.max(1),
            seq: AtomicU64::new(0),
            journal: None,
            sent: AtomicU64::new(0),
            slow_disconnects: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            site: std::sync::OnceLock::new(),
        }
    }

    /// Joins a site: from now on messages go through `feed` (only the
    /// first call counts).
    pub fn set_site(&self, feed: Arc<dyn SiteFeed>) {
        let _ = self.site.set(feed);
    }

    /// A message from the site's feed, with the site's `seq`: journaled
    /// and sent to its connection, or to every console feed, if open here.
    pub fn deliver_site(
        &self,
        seq: u64,
        to: Option<&str>,
        channel: &str,
        data: &serde_json::Value,
    ) {
        self.seq.fetch_max(seq, Ordering::SeqCst);
        let text: Arc<str> = match serde_json::to_string(&Envelope { seq, channel, data }) {
            Ok(t) => t.into(),
            Err(_) => return,
        };
        self.journal_write(seq, to.unwrap_or(SITE_CONSOLE), &text);
        match to {
            Some(id) => {
                self.send(id, seq, &text);
            }
            None => {
                for id in self.console_ids() {
                    self.send(&id, seq, &text);
                }
            }
        }
    }

    /// A hub that keeps every message in `journal` for resuming clients;
    /// `seq` continues after the journal's last.
    pub fn with_journal(buffer: usize, journal: Arc<dyn Journal>) -> anyhow::Result<Hub> {
        let last = journal.last_seq()?;
        let mut hub = Hub::new(buffer);
        hub.seq = AtomicU64::new(last);
        hub.journal = Some(journal);
        Ok(hub)
    }

    /// Whether another client would be turned away (counted if so).
    pub fn full(&self) -> bool {
        let full = self.conns.lock().map_or(true, |c| c.len() >= MAX_CLIENTS);
        if full {
            self.refused.fetch_add(1, Ordering::Relaxed);
        }
        full
    }

    /// Registers a new connection under a fresh id; `None` when
    /// [`MAX_CLIENTS`] are connected (counted).
    pub fn connect(&self) -> Option<Subscription> {
        let connection_id = format!("ws-{}", uuid::Uuid::new_v4().simple());
        self.register(connection_id).ok()
    }

    /// Reopens connection `id` for a client that last read `after`: it is
    /// registered first (live messages queue from now on), then what it
    /// missed is read from the journal. The writer sends those, then the
    /// queued ones above the last of them.
    pub fn resume(&self, id: &str, after: u64) -> Result<(Subscription, Missed), ResumeError> {
        let Some(journal) = &self.journal else {
            return Err(ResumeError::NoJournal);
        };
        // A site's console messages are journaled once for every feed.
        let key = match self.site.get().is_some() && self.is_console(id) {
            true => SITE_CONSOLE,
            false => id,
        };
        let sub = self.register(id.to_string())?;
        match journal.since(key, after) {
            Ok(missed) => Ok((sub, missed)),
            Err(e) => {
                self.disconnect(id);
                Err(ResumeError::Journal(format!("{e:#}")))
            }
        }
    }

    fn register(&self, connection_id: String) -> Result<Subscription, ResumeError> {
        let (tx, rx) = mpsc::channel(self.buffer);
        let cut = Arc::new(Notify::new());
        let mut c = self.conns.lock().map_err(|_| ResumeError::Full)?;
        if c.contains_key(&connection_id) {
            return Err(ResumeError::Open(connection_id));
        }
        if c.len() >= MAX_CLIENTS {
            self.refused.fetch_add(1, Ordering::Relaxed);
            return Err(ResumeError::Full);
        }
        c.insert(
            connection_id.clone(),
            Conn {
                tx,
                cut: Arc::clone(&cut),
            },
        );
        Ok(Subscription {
            connection_id,
            rx,
            cut,
        })
    }

    /// Forgets a connection (its socket closed).
    pub fn disconnect(&self, id: &str) {
        if let Ok(mut c) = self.conns.lock() {
            c.remove(id);
        }
    }

    /// Whether a connection with this id is open.
    pub fn is_connected(&self, id: &str) -> bool {
        self.conns.lock().is_ok_and(|c| c.contains_key(id))
    }

    /// Queues `{"seq": …, "channel": channel, "data": data}` for one
    /// connection, after writing it to the journal (if any). Returns whether
    /// it was queued (in a site: whether the site took it).
    pub fn publish<T: Serialize>(&self, id: &str, channel: &str, data: &T) -> bool {
        if let (Some(site), Ok(v)) = (self.site.get(), serde_json::to_value(data)) {
            if site.offer(Some(id), channel, &v) {
                return true;
            }
        }
        self.publish_local(id, channel, data)
    }

    /// [`Hub::publish`] on this box only, with this box's own `seq`.
    pub fn publish_local<T: Serialize>(&self, id: &str, channel: &str, data: &T) -> bool {
        let seq = self.seq.fetch_add(1, Ordering::SeqCst) + 1;
        let text: Arc<str> = match serde_json::to_string(&Envelope { seq, channel, data }) {
            Ok(t) => t.into(),
            Err(e) => {
                tracing::error!(error = %e, "cannot serialise a WebSocket message");
                return false;
            }
        };
        // Journal first, queue second: a client resuming meanwhile either
        // reads it from the journal or is registered in time to be queued it.
        self.journal_write(seq, id, &text);
        self.send(id, seq, &text)
    }

    fn journal_write(&self, seq: u64, id: &str, text: &str) {
        if let Some(j) = &self.journal {
            let now = crate::clock::unix_ms(std::time::SystemTime::now());
            if let Err(e) = j.append(seq, id, text, now) {
                tracing::warn!(error = %e, connection = %id, "WebSocket journal write failed; this message cannot be resumed");
            }
        }
    }

    /// Queues a message for connection `id` if it is open here; a client
    /// whose queue is full is cut off.
    fn send(&self, id: &str, seq: u64, text: &Arc<str>) -> bool {
        let Ok(mut conns) = self.conns.lock() else {
            return false;
        };
        let Some(conn) = conns.get(id) else {
            return false;
        };
        match conn.tx.try_send((seq, Arc::clone(text))) {
            Ok(()) => {
                self.sent.fetch_add(1, Ordering::Relaxed);
                true
            }
            Err(mpsc::error::TrySendError::Full(_)) => {
                conn.cut.notify_one();
                conns.remove(id);
                self.slow_disconnects.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(connection = %id, buffer = self.buffer,
                    "WebSocket client fell too far behind; disconnected");
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                conns.remove(id);
                false
            }
        }
    }

    /// Registers a new console connection: one that is sent every alert
    /// message, whatever connection the alert names.
    pub fn connect_console(&self) -> Option<Subscription> {
        let sub = self.connect()?;
        self.keep_console(&sub.connection_id);
        Some(sub)
    }

    /// Whether `id` is a console feed the hub still feeds.
    pub fn is_console(&self, id: &str) -> bool {
        self.consoles.lock().is_ok_and(|c| c.contains_key(id))
    }

    /// Feeds `id` as a console from now on (again, after a resume).
    pub fn keep_console(&self, id: &str) {
        let Ok(mut c) = self.consoles.lock() else {
            return;
        };
        c.insert(id.to_string(), std::time::Instant::now());
        while c.len() > MAX_CONSOLES {
            let Some(oldest) = c.iter().min_by_key(|(_, at)| **at).map(|(k, _)| k.clone()) else {
                break;
            };
            c.remove(&oldest);
        }
    }

    /// Publishes one message to every console feed (in a site, to every
    /// box's console feeds).
    pub fn publish_console<T: Serialize>(&self, channel: &str, data: &T) {
        if let (Some(site), Ok(v)) = (self.site.get(), serde_json::to_value(data)) {
            if site.offer(None, channel, &v) {
                return;
            }
        }
        self.publish_console_local(channel, data);
    }

    /// [`Hub::publish_console`] on this box only.
    pub fn publish_console_local<T: Serialize>(&self, channel: &str, data: &T) {
        for id in self.console_ids() {
            self.publish_local(&id, channel, data);
        }
    }

    /// The console feeds this hub feeds (a copy: publishing takes other locks).
    fn console_ids(&self) -> Vec<String> {
        self.consoles
            .lock()
            .map(|c| c.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// The `seq` of the newest message published.
    pub fn last_seq(&self) -> u64 {
        self.seq.load(Ordering::SeqCst)
    }

    /// Current counters.
    pub fn stats(&self) -> HubStats {
        HubStats {
            connected: self.conns.lock().map_or(0, |c| c.len()),
            refused: self.refused.load(Ordering::Relaxed),
            sent: self.sent.load(Ordering::Relaxed),
            slow_disconnects: self.slow_disconnects.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_queue_cuts_only_that_client() {
        let hub = Hub::new(2);
        let mut fast = hub.connect().expect("room");
        let slow = hub.connect().expect("room");
        for i in 0..5 {
            assert!(hub.publish(&fast.connection_id, "alert", &i));
            assert!(fast.rx.try_recv().is_ok());
            hub.publish(&slow.connection_id, "alert", &i);
        }
        assert!(hub.is_connected(&fast.connection_id));
        assert!(!hub.is_connected(&slow.connection_id), "slow client cut");
        let s = hub.stats();
        assert_eq!((s.connected, s.slow_disconnects), (1, 1));
    }

    #[test]
    fn clients_past_the_cap_are_turned_away() {
        let hub = Hub::new(1);
        let subs: Vec<_> = (0..MAX_CLIENTS).filter_map(|_| hub.connect()).collect();
        assert_eq!(subs.len(), MAX_CLIENTS);
        assert!(hub.full());
        assert!(hub.connect().is_none());
        hub.disconnect(&subs[0].connection_id);
        assert!(!hub.full() && hub.connect().is_some());
        assert_eq!(hub.stats().refused, 2);
    }

    #[test]
    fn a_console_feed_gets_every_message_and_is_kept_while_closed() {
        let hub = Hub::new(8);
        let mut console = hub.connect_console().expect("room");
        let mut sdk = hub.connect().expect("room");
        let id = console.connection_id.clone();
        hub.publish_console("alert", &1);
        hub.publish(&sdk.connection_id, "alert", &2);
        assert!(console.rx.try_recv().is_ok(), "the console got its copy");
        assert!(
            console.rx.try_recv().is_err(),
            "and not the SDK client's own"
        );
        assert!(sdk.rx.try_recv().is_ok());
        hub.disconnect(&id);
        assert!(hub.is_console(&id), "remembered while closed, to resume");
        for _ in 0..MAX_CONSOLES {
            drop(hub.connect_console());
        }
        assert!(!hub.is_console(&id), "the oldest is forgotten past the cap");
    }

    /// Stands in for the site's stream (NATS is exercised by the fleet
    /// suite test): records what the hub offers, or refuses it.
    struct Recorded(Mutex<Vec<(Option<String>, serde_json::Value)>>, bool);

    impl SiteFeed for Recorded {
        fn offer(&self, to: Option<&str>, _: &str, data: &serde_json::Value) -> bool {
            if let Ok(mut v) = self.0.lock() {
                v.push((to.map(String::from), data.clone()));
            }
            self.1
        }
    }

    #[test]
    fn in_a_site_messages_come_back_with_the_site_seq_and_resume_from_it() -> anyhow::Result<()> {
        let limits = crate::store::JournalLimits {
            max_messages: 100,
            max_age: std::time::Duration::from_secs(3600),
        };
        let journal = Arc::new(crate::store::StoreJournal::open(None, limits)?);
        let hub = Hub::with_journal(8, journal)?;
        let feed = Arc::new(Recorded(Mutex::default(), true));
        hub.set_site(Arc::clone(&feed) as Arc<dyn SiteFeed>);
        let mut client = hub.connect().expect("room");
        let mut console = hub.connect_console().expect("room");
        let id = client.connection_id.clone();
        assert!(hub.publish(&id, "alert", &1));
        hub.publish_console("alert", &2);
        assert!(
            client.rx.try_recv().is_err(),
            "nothing local until the site sends it back"
        );
        assert_eq!(feed.0.lock().map(|v| v.len()).unwrap_or(0), 2);

        hub.deliver_site(41, Some(&id), "alert", &serde_json::json!(1));
        hub.deliver_site(42, None, "alert", &serde_json::json!(2));
        assert_eq!(client.rx.try_recv().map(|m| m.0).ok(), Some(41));
        assert_eq!(console.rx.try_recv().map(|m| m.0).ok(), Some(42));
        assert_eq!(hub.last_seq(), 42);

        // Reconnecting (here, or on another box that journaled the same
        // messages): what came after the seq read, under the site's seq.
        hub.disconnect(&id);
        let (_, missed) = hub.resume(&id, 0).map_err(anyhow::Error::msg)?;
        let seqs: Vec<u64> = missed.messages.iter().map(|m| m.0).collect();
        assert_eq!(seqs, vec![41]);
        let console_id = console.connection_id.clone();
        hub.disconnect(&console_id);
        let (_, missed) = hub.resume(&console_id, 41).map_err(anyhow::Error::msg)?;
        assert_eq!(
            missed.messages.iter().map(|m| m.0).collect::<Vec<_>>(),
            vec![42]
        );

        // The site refuses: the message goes to this box's clients only.
        let down = Hub::new(8);
        down.set_site(Arc::new(Recorded(Mutex::default(), false)));
        let mut local = down.connect().expect("room");
        assert!(down.publish(&local.connection_id, "alert", &3));
        assert!(local.rx.try_recv().is_ok());
        Ok(())
    }
}
