//! A NATS JetStream cluster on this machine, for `sightline bench fleet`
//! and the fleet tests: `n` `nats-server` processes (the pinned binary
//! `scripts/setup --test` installs) on free ports of 127.0.0.1, routed to
//! each other, each with its own store, one user and password, and a
//! monitoring port (`/varz`). Killed on drop.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

/// The pinned server `scripts/setup --test` unpacks under the cache.
pub fn binary() -> PathBuf {
    let cache = std::env::var_os("SIGHTLINE_CACHE").map_or_else(
        || Path::new(&std::env::var_os("HOME").unwrap_or_default()).join(".cache/sightline"),
        PathBuf::from,
    );
    cache.join("nats/2.15.1/nats-server")
}

/// One server of the cluster.
pub struct Server {
    pub port: u16,
    /// The HTTP monitoring port (`/varz`, `/healthz`).
    pub monitor: u16,
    conf: PathBuf,
    child: Option<Child>,
}

/// The servers, and who may sign in.
pub struct Cluster {
    pub servers: Vec<Server>,
    pub user: String,
    pub password: String,
}

fn free_ports(n: usize) -> anyhow::Result<Vec<u16>> {
    // Held open together so no two of them are the same port.
    let held = (0..n)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0"))
        .collect::<Result<Vec<_>, _>>()
        .context("finding free ports")?;
    held.iter()
        .map(|l| Ok(l.local_addr()?.port()))
        .collect::<anyhow::Result<Vec<u16>>>()
}

impl Cluster {
    /// Starts `n` servers in one JetStream cluster, their stores and
    /// configs under `dir`, and waits until each listens.
    pub fn start(n: usize, dir: &Path, (user, password): (&str, &str)) -> anyhow::Result<Cluster> {
        let bin = binary();
        if !bin.is_file() {
            bail!("{} is missing: run scripts/setup --test", bin.display());
        }
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let ports = free_ports(3 * n)?;
        let routes: Vec<String> = (0..n)
            .map(|i| format!("\"nats-route://127.0.0.1:{}\"", ports[3 * i + 1]))
            .collect();
        let mut servers = Vec::new();
        for i in 0..n {
            let (port, cluster_port, monitor) = (ports[3 * i], ports[3 * i + 1], ports[3 * i + 2]);
            let cluster = match n > 1 {
                true => format!(
                    "cluster {{ name: sightline, listen: \"127.0.0.1:{cluster_port}\", routes: [{}] }}",
                    routes.join(", ")
                ),
                false => String::new(),
            };
            let conf = dir.join(format!("n{i}.conf"));
            let store = dir.join(format!("js{i}"));
            let text = format!(
                "server_name: n{i}\nlisten: \"127.0.0.1:{port}\"\nhttp: \"127.0.0.1:{monitor}\"\n\
                 jetstream {{ store_dir: \"{}\" }}\n\
                 authorization {{ user: {user}, password: \"{password}\" }}\n{cluster}\n",
                store.display()
            );
            std::fs::write(&conf, text).with_context(|| format!("writing {}", conf.display()))?;
            let mut s = Server {
                port,
                monitor,
                conf,
                child: None,
            };
            s.start()?;
            servers.push(s);
        }
        for s in &servers {
            s.wait_listening()?;
        }
        Ok(Cluster {
            servers,
            user: user.to_string(),
            password: password.to_string(),
        })
    }

    /// Waits until the cluster has elected its JetStream meta leader (an
    /// account query answers), so the first box does not race the election.
    pub async fn ready(&self) -> anyhow::Result<()> {
        let until = Instant::now() + Duration::from_secs(30);
        loop {
            let opts = async_nats::ConnectOptions::with_user_and_password(
                self.user.clone(),
                self.password.clone(),
            );
            if let Ok(c) = opts.connect(self.urls()).await {
                if async_nats::jetstream::new(c).query_account().await.is_ok() {
                    return Ok(());
                }
            }
            if Instant::now() > until {
                bail!("JetStream never became ready");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The client URLs.
    pub fn urls(&self) -> Vec<String> {
        self.servers
            .iter()
            .map(|s| format!("nats://127.0.0.1:{}", s.port))
            .collect()
    }

    /// Messages in and out summed over the servers (their `/varz`).
    pub async fn messages(&self) -> anyhow::Result<(u64, u64)> {
        let client = reqwest::Client::new();
        let (mut into, mut out) = (0, 0);
        for s in &self.servers {
            let url = format!("http://127.0.0.1:{}/varz", s.monitor);
            let v: serde_json::Value = client.get(&url).send().await?.json().await?;
            into += v["in_msgs"].as_u64().unwrap_or(0);
            out += v["out_msgs"].as_u64().unwrap_or(0);
        }
        Ok((into, out))
    }
}

impl Server {
    fn start(&mut self) -> anyhow::Result<()> {
        let child = Command::new(binary())
            .arg("-c")
            .arg(&self.conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting nats-server")?;
        self.child = Some(child);
        Ok(())
    }

    fn wait_listening(&self) -> anyhow::Result<()> {
        let until = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if Instant::now() > until {
                bail!("nats-server on {} never listened", self.port);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }

    /// Starts it again after [`Server::kill`], on the same ports and store.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.start()?;
        self.wait_listening()
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
