//! A real NATS JetStream cluster on this machine for the fleet tests: the
//! one `sightline bench fleet` starts too (`sightline::tools::nats`), with
//! the site's user and password and its files in a temporary folder.
//! Killed on drop.

use std::path::{Path, PathBuf};

pub const USER: &str = "site";
pub const PASSWORD: &str = "fleet-test-password";

/// The cluster; its `servers` can be killed and restarted.
pub struct Cluster {
    inner: sightline::tools::nats::Cluster,
    _dir: tempfile::TempDir,
}

impl std::ops::Deref for Cluster {
    type Target = sightline::tools::nats::Cluster;
    fn deref(&self) -> &Self::Target {
        &self.inner
    }
}

impl std::ops::DerefMut for Cluster {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.inner
    }
}

impl Cluster {
    /// Starts `n` servers in one JetStream cluster and waits until each listens.
    pub fn start(n: usize) -> Cluster {
        let dir = tempfile::tempdir().expect("temp dir");
        let inner = sightline::tools::nats::Cluster::start(n, dir.path(), (USER, PASSWORD))
            .expect("a NATS cluster (scripts/setup --test installs the server)");
        Cluster { inner, _dir: dir }
    }

    /// Waits until the cluster has elected its JetStream meta leader, so
    /// the first box does not race the election.
    pub async fn ready(&self) {
        self.inner.ready().await.expect("JetStream ready");
    }

    /// The client URLs, as a `[fleet] nats` TOML array.
    pub fn urls_toml(&self) -> String {
        let urls: Vec<String> = self.urls().iter().map(|u| format!("\"{u}\"")).collect();
        format!("[{}]", urls.join(", "))
    }
}

/// A credentials file for the cluster's user, owner-only, in `dir`.
pub fn credentials(dir: &Path) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let f = dir.join("nats-credentials");
    std::fs::write(&f, format!("{USER}:{PASSWORD}\n")).expect("credentials written");
    std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    f
}
