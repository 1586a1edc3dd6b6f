//! `[fleet]`: joining a site of boxes that share one catalog on a NATS
//! JetStream cluster. Without the section a box runs on its own, exactly as
//! before. The credentials file itself is read when the daemon starts (its
//! mode and format are checked there); here only that it is named.

use std::path::PathBuf;

use serde::Deserialize;

use super::validate::Checker;

/// `[fleet]` as written.
#[derive(Debug, Default, Deserialize)]
pub struct RawFleet {
    /// NATS server URLs (`nats://host:4222`, `tls://host:4222`).
    pub nats: Option<Vec<String>>,
    /// A file, owner-only: `user:password` on one line, or an nkey seed.
    pub credentials: Option<String>,
    /// PEM file of the CA that signed the servers' certificates.
    pub tls_ca: Option<String>,
    /// The site's name: its buckets and subjects are named after it.
    pub site: Option<String>,
    /// This box's name in the site (default: the host name).
    pub box_id: Option<String>,
    /// Streams this box takes (default: 8 per core).
    pub capacity: Option<i64>,
    /// Free-form tags a stream's `pin` can name (`gpu`, `entrance`).
    pub labels: Option<Vec<String>>,
}

/// A validated `[fleet]`.
#[derive(Debug, Clone)]
pub struct FleetConfig {
    pub nats: Vec<String>,
    pub credentials: PathBuf,
    pub tls_ca: Option<PathBuf>,
    pub site: String,
    pub box_id: String,
    pub capacity: usize,
    pub labels: Vec<String>,
}

/// Streams a box takes by default: `sightline bench` measured 16 realistic
/// cameras inside the budget on 2 cores.
pub const STREAMS_PER_CORE: usize = 8;

/// A name usable inside a NATS subject and a bucket name.
fn token_ok(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().replace('.', "-"))
        .ok()
        .filter(|h| token_ok(h))
        .unwrap_or_else(|| "box".to_string())
}

pub(super) fn fleet(c: &mut Checker, f: &RawFleet) -> Option<FleetConfig> {
    let nats = f.nats.clone().unwrap_or_default();
    if nats.is_empty() {
        c.bad("fleet.nats", "list at least one NATS server URL");
    }
    for (i, u) in nats.iter().enumerate() {
        let ok = url::Url::parse(u)
            .is_ok_and(|p| matches!(p.scheme(), "nats" | "tls") && p.host().is_some());
        if !ok {
            c.bad(
                format!("fleet.nats[{i}]"),
                format!("{u:?} must be nats://host:port or tls://host:port"),
            );
        }
    }
    let credentials = f.credentials.as_ref().map(PathBuf::from);
    if credentials.is_none() {
        c.bad(
            "fleet.credentials",
            "a site needs authentication: name an owner-only file holding user:password or an nkey seed",
        );
    }
    let site = f.site.clone().unwrap_or_default();
    if !token_ok(&site) {
        c.bad(
            "fleet.site",
            format!("{site:?} must be 1 to 64 letters, digits, '-' or '_'"),
        );
    }
    let box_id = f.box_id.clone().unwrap_or_else(host_name);
    if !token_ok(&box_id) {
        c.bad(
            "fleet.box_id",
            format!("{box_id:?} must be 1 to 64 letters, digits, '-' or '_'"),
        );
    }
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let capacity = c.int(
        "fleet.capacity",
        f.capacity,
        (cores * STREAMS_PER_CORE) as i64,
        0,
        10_000,
    ) as usize;
    let labels = f.labels.clone().unwrap_or_default();
    for l in &labels {
        if !token_ok(l) {
            c.bad(
                "fleet.labels",
                format!("{l:?} must be letters, digits, '-' or '_'"),
            );
        }
    }
    Some(FleetConfig {
        nats,
        credentials: credentials?,
        tls_ca: f.tls_ca.as_ref().map(PathBuf::from),
        site,
        box_id,
        capacity,
        labels,
    })
}
