//! The API's connections, bounded: a flood of idle or slow connections
//! cannot starve the daemon of file descriptors or its operators of the API.
//!
//! - Request headers must arrive within [`HEADER_TIMEOUT`] (hyper's
//!   header-read timeout, which also closes keep-alive connections left idle
//!   that long).
//! - At most [`MAX_CONNECTIONS`] connections at once, and at most
//!   [`MAX_UNPROVEN_PER_PEER`] from one address that have not yet sent a
//!   request with the API key. A new connection over either cap evicts the
//!   oldest unproven connection (of that peer, or anywhere): a flood of
//!   keyless connections ages itself out, while an operator's new
//!   connection always gets in. Only when every connection has proven itself
//!   is a new one refused.
//! - The cap never reaches into the [`RESERVED_FDS`] descriptors kept below
//!   the open-file limit for everything else (cameras, recordings, the
//!   state database, and above all outgoing webhook and MQTT connections),
//!   so an inbound flood cannot stop deliveries.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::sync::oneshot;

/// Time a client has to send a request's headers.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections at once, all peers.
pub const MAX_CONNECTIONS: usize = 512;
/// Connections from one address that have not shown the key yet.
pub const MAX_UNPROVEN_PER_PEER: usize = 32;
/// Descriptors the API's connections never use.
pub const RESERVED_FDS: usize = 512;

/// The connection cap under an open-file limit of `nofile`: at most
/// [`MAX_CONNECTIONS`], never into the reserve, and a handful even when the
/// limit is tiny.
pub fn cap_for(nofile: u64) -> usize {
    let room = usize::try_from(nofile).unwrap_or(usize::MAX);
    room.saturating_sub(RESERVED_FDS).clamp(8, MAX_CONNECTIONS)
}

/// The current soft limit on open files.
fn open_file_limit() -> u64 {
    // SAFETY: getrlimit only writes the struct given.
    unsafe {
        let mut r: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) == 0 {
            r.rlim_cur
        } else {
            1024
        }
    }
}

/// Counters for `GET status`.
#[derive(Debug, Default)]
pub struct ConnStats {
    pub accepted: AtomicU64,
    pub evicted: AtomicU64,
    pub refused: AtomicU64,
}

struct Conn {
    id: u64,
    peer: IpAddr,
    proven: Arc<AtomicBool>,
    kill: Option<oneshot::Sender<()>>,
}

/// The live connections.
struct Table {
    next: u64,
    live: Vec<Conn>,
    /// Connections at once ([`cap_for`]).
    max: usize,
}

impl Table {
    /// Makes room for a connection from `peer`: evicts the oldest unproven
    /// connection when a cap is reached. False when there is no room.
    fn admit(&mut self, peer: IpAddr, stats: &ConnStats) -> bool {
        let unproven = |c: &Conn| !c.proven.load(Ordering::Relaxed);
        let from_peer = self
            .live
            .iter()
            .filter(|c| c.peer == peer && unproven(c))
            .count();
        let victim = if from_peer >= MAX_UNPROVEN_PER_PEER {
            self.live.iter().position(|c| c.peer == peer && unproven(c))
        } else if self.live.len() >= self.max {
            match self.live.iter().position(unproven) {
                Some(i) => Some(i),
                None => {
                    stats.refused.fetch_add(1, Ordering::Relaxed);
                    return false;
                }
            }
        } else {
            None
        };
        if let Some(i) = victim {
            let mut c = self.live.remove(i);
            if let Some(k) = c.kill.take() {
                let _ = k.send(());
            }
            stats.evicted.fetch_add(1, Ordering::Relaxed);
        }
        true
    }
}

/// Serves `app` on `listener` with the limits above until `stop` fires.
/// `key` is the API key: a request that carries it proves its connection.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    key: Arc<str>,
    stats: Arc<ConnStats>,
    mut stop: oneshot::Receiver<()>,
) {
    let nofile = open_file_limit();
    let max = cap_for(nofile);
    tracing::debug!(max, nofile, reserved = RESERVED_FDS, "API connection cap");
    let table = Arc::new(Mutex::new(Table {
        next: 0,
        live: Vec::new(),
        max,
    }));
    loop {
        let (stream, peer) = tokio::select! {
            _ = &mut stop => break,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // Out of descriptors, usually: wait instead of spinning.
                    tracing::warn!(error = %e, "API accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Some((id, proven, killed)) = register(&table, peer, &stats) else {
            drop(stream);
            continue;
        };
        stats.accepted.fetch_add(1, Ordering::Relaxed);
        let (app, key, table) = (app.clone(), Arc::clone(&key), Arc::clone(&table));
        tokio::spawn(async move {
            connection(stream, app, key, proven, killed).await;
            if let Ok(mut t) = table.lock() {
                t.live.retain(|c| c.id != id);
            }
        });
    }
}

type Registered = (u64, Arc<AtomicBool>, oneshot::Receiver<()>);

fn register(table: &Mutex<Table>, peer: SocketAddr, stats: &ConnStats) -> Option<Registered> {
    let mut t = table.lock().ok()?;
    if !t.admit(peer.ip(), stats) {
        return None;
    }
    let (kill, killed) = oneshot::channel();
    let proven = Arc::new(AtomicBool::new(false));
    t.next += 1;
    let id = t.next;
    t.live.push(Conn {
        id,
        peer: peer.ip(),
        proven: Arc::clone(&proven),
        kill: Some(kill),
    });
    Some((id, proven, killed))
}

/// One HTTP/1 connection (upgrades to WebSocket included), ended early if
/// evicted.
async fn connection(
    stream: tokio::net::TcpStream,
    app: Router,
    key: Arc<str>,
    proven: Arc<AtomicBool>,
    killed: oneshot::Receiver<()>,
) {
    let service = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
        let given = req
            .headers()
            .get("x-access-token")
            .map(|v| v.as_bytes())
            .unwrap_or_default();
        if crate::alert::sign::constant_time_eq(given, key.as_bytes()) {
            proven.store(true, Ordering::Relaxed);
        }
        let mut app = app.clone();
        async move {
            use tower_service::Service;
            app.call(req.map(axum::body::Body::new)).await
        }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT);
    let conn = builder
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades();
    tokio::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => {
            if let Err(e) = r {
                tracing::debug!(error = %e, "API connection ended");
            }
        }
        _ = killed => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_keeps_out_of_the_reserve() {
        assert_eq!(cap_for(65_536), MAX_CONNECTIONS);
        assert_eq!(cap_for(768), 768 - RESERVED_FDS);
        assert_eq!(cap_for(256), 8, "a tiny limit still admits a few");
    }
}
