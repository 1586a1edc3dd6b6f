//! A real NATS JetStream cluster on this machine: `n` `nats-server`
//! processes (the pinned binary `scripts/setup --test` installs) on free
//! ports, routed to each other, each with its own store and the site's
//! user and password. Killed on drop.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const USER: &str = "site";
pub const PASSWORD: &str = "fleet-test-password";

/// The pinned server binary.
pub fn binary() -> PathBuf {
    super::playwright()
        .parent()
        .and_then(Path::parent)
        .expect("cache dir")
        .join("nats/2.15.1/nats-server")
}

pub struct Server {
    pub port: u16,
    cluster_port: u16,
    conf: PathBuf,
    child: Option<Child>,
}

pub struct Cluster {
    pub servers: Vec<Server>,
    _dir: tempfile::TempDir,
}

fn wait_listening(port: u16) {
    let until = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < until,
            "nats-server on {port} never listened"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

impl Cluster {
    /// Starts `n` servers in one JetStream cluster and waits until each listens.
    pub fn start(n: usize) -> Cluster {
        let bin = binary();
        assert!(
            bin.is_file(),
            "{} is missing: run scripts/setup --test",
            bin.display()
        );
        let dir = tempfile::tempdir().expect("temp dir");
        // Held open together so no two of them are the same port.
        let held: Vec<std::net::TcpListener> = (0..2 * n)
            .map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("a free port"))
            .collect();
        let port = |i: usize| held[i].local_addr().expect("bound").port();
        let ports: Vec<(u16, u16)> = (0..n).map(|i| (port(2 * i), port(2 * i + 1))).collect();
        drop(held);
        let routes: Vec<String> = ports
            .iter()
            .map(|(_, c)| format!("\"nats-route://127.0.0.1:{c}\""))
            .collect();
        let mut servers = Vec::new();
        for (i, (port, cluster_port)) in ports.iter().enumerate() {
            let store = dir.path().join(format!("js{i}"));
            let conf = dir.path().join(format!("n{i}.conf"));
            let cluster = if n > 1 {
                format!(
                    "cluster {{ name: sightline, listen: \"127.0.0.1:{cluster_port}\", routes: [{}] }}",
                    routes.join(", ")
                )
            } else {
                String::new()
            };
            std::fs::write(
                &conf,
                format!(
                    "server_name: n{i}\nlisten: \"127.0.0.1:{port}\"\n\
                     jetstream {{ store_dir: \"{}\" }}\n\
                     authorization {{ user: {USER}, password: \"{PASSWORD}\" }}\n{cluster}\n",
                    store.display()
                ),
            )
            .expect("nats config written");
            let mut s = Server {
                port: *port,
                cluster_port: *cluster_port,
                conf,
                child: None,
            };
            s.start();
            servers.push(s);
        }
        for s in &servers {
            wait_listening(s.port);
        }
        Cluster { servers, _dir: dir }
    }

    /// Waits until the cluster has elected its JetStream meta leader (an
    /// account query answers), so the first box does not race the election.
    pub async fn ready(&self) {
        let url = format!("nats://127.0.0.1:{}", self.servers[0].port);
        let until = Instant::now() + Duration::from_secs(30);
        loop {
            let opts =
                async_nats::ConnectOptions::with_user_and_password(USER.into(), PASSWORD.into());
            if let Ok(c) = opts.connect(url.as_str()).await {
                if async_nats::jetstream::new(c).query_account().await.is_ok() {
                    return;
                }
            }
            assert!(Instant::now() < until, "JetStream never became ready");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The client URLs, as a `[fleet] nats` TOML array.
    pub fn urls_toml(&self) -> String {
        let urls: Vec<String> = self
            .servers
            .iter()
            .map(|s| format!("\"nats://127.0.0.1:{}\"", s.port))
            .collect();
        format!("[{}]", urls.join(", "))
    }
}

impl Server {
    pub fn start(&mut self) {
        let child = Command::new(binary())
            .arg("-c")
            .arg(&self.conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nats-server starts");
        self.child = Some(child);
        let _ = self.cluster_port;
    }

    /// Starts it again after [`Server::kill`], on the same ports and store.
    pub fn restart(&mut self) {
        self.start();
        wait_listening(self.port);
    }

    /// SIGKILL.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
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
