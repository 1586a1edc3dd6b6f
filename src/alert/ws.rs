//! WebSocket fan-out: at-most-once messages to connected clients.
//!
//! Each connection has a bounded queue. Publishing never waits: when a
//! client's queue is full the client is cut off (its writer is told to drop
//! the socket) and counted, so one client that stops reading costs the
//! others nothing. A message that cannot be queued is not retried; clients
//! that need every alert use a webhook or MQTT target.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde::Serialize;
use tokio::sync::{mpsc, Notify};

/// What a connection's writer task holds.
pub struct Subscription {
    pub connection_id: String,
    pub rx: mpsc::Receiver<Arc<str>>,
    /// Fires when the hub cuts the client off.
    pub cut: Arc<Notify>,
}

struct Conn {
    tx: mpsc::Sender<Arc<str>>,
    cut: Arc<Notify>,
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
    buffer: usize,
    sent: AtomicU64,
    slow_disconnects: AtomicU64,
    refused: AtomicU64,
}

/// Most WebSocket clients at once: each holds a socket and a queue, and
/// they no longer count against the API's connection cap once upgraded.
pub const MAX_CLIENTS: usize = 256;

#[derive(Serialize)]
struct Envelope<'a, T: Serialize> {
    channel: &'a str,
    data: &'a T,
}

impl Hub {
    /// A hub whose clients may fall `buffer` messages behind.
    pub fn new(buffer: usize) -> Hub {
        Hub {
            conns: Mutex::new(HashMap::new()),
            buffer: buffer.max(1),
            sent: AtomicU64::new(0),
            slow_disconnects: AtomicU64::new(0),
            refused: AtomicU64::new(0),
        }
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
        let (tx, rx) = mpsc::channel(self.buffer);
        let cut = Arc::new(Notify::new());
        let mut c = self.conns.lock().ok()?;
        if c.len() >= MAX_CLIENTS {
            self.refused.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        c.insert(
            connection_id.clone(),
            Conn {
                tx,
                cut: Arc::clone(&cut),
            },
        );
        Some(Subscription {
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

    /// Queues `{"channel": channel, "data": data}` for one connection.
    /// Returns whether it was queued.
    pub fn publish<T: Serialize>(&self, id: &str, channel: &str, data: &T) -> bool {
        let text: Arc<str> = match serde_json::to_string(&Envelope { channel, data }) {
            Ok(t) => t.into(),
            Err(e) => {
                tracing::error!(error = %e, "cannot serialise a WebSocket message");
                return false;
            }
        };
        let Ok(mut conns) = self.conns.lock() else {
            return false;
        };
        let Some(conn) = conns.get(id) else {
            return false;
        };
        match conn.tx.try_send(text) {
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
}
