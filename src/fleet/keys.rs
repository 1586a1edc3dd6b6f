//! The site's API key: one key works on every box, and so do the media
//! links signed with it (their key is derived from the API key). It lives
//! in the bucket `sightline_<site>_keys`, readable only with the site's NATS
//! credentials. The first box to join puts its own key there; every later
//! box takes the site's and writes it over its key file, so a box that
//! starts while NATS is away still answers with the site's key.

use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use async_nats::jetstream;

use crate::config::FleetConfig;

/// How long a starting box waits for NATS before it goes on with the key
/// it has (the site's, from its last start).
const WAIT: Duration = Duration::from_secs(5);

async fn fetch(cfg: &FleetConfig, ours: &str) -> anyhow::Result<String> {
    let client = super::auth::options(cfg)?
        .connect(cfg.nats.clone())
        .await
        .context("connecting to NATS")?;
    let servers = cfg.nats.len().max(client.server_info().connect_urls.len());
    let js = jetstream::new(client);
    let bucket = super::open_bucket(&js, cfg, servers, ("keys", Duration::ZERO)).await?;
    match bucket.create("api", ours.to_string().into()).await {
        Ok(_) => {
            tracing::info!(site = %cfg.site, "this box's API key is now the site's");
            Ok(ours.to_string())
        }
        Err(_) => {
            let v = bucket
                .get("api")
                .await
                .context("reading the site's API key")?
                .context("the site's API key is missing")?;
            Ok(String::from_utf8(v.to_vec()).context("the site's API key is not text")?)
        }
    }
}

/// The key this box should answer to: the site's when NATS answers within
/// a few seconds (written over `path`, mode 0600, if it differs), else
/// `ours` (the key file as it is).
pub async fn site_key(cfg: &FleetConfig, ours: String, path: &Path) -> String {
    let site = match tokio::time::timeout(WAIT, fetch(cfg, &ours)).await {
        Ok(Ok(k)) => k,
        Ok(Err(e)) => {
            tracing::warn!(error = %format!("{e:#}"), "cannot read the site's API key; using this box's key file");
            return ours;
        }
        Err(_) => {
            tracing::warn!(
                "NATS did not answer within 5 s; using this box's key file as the site's API key"
            );
            return ours;
        }
    };
    if site != ours {
        if let Err(e) = write_key(path, &site) {
            tracing::warn!(error = %format!("{e:#}"), "cannot keep the site's API key in the key file");
        } else {
            tracing::info!(path = %path.display(), "took the site's API key");
        }
    }
    site
}

fn write_key(path: &Path, key: &str) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("site");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("writing {}", tmp.display()))?;
    writeln!(f, "{key}")?;
    f.sync_all()?;
    std::fs::rename(&tmp, path).with_context(|| format!("replacing {}", path.display()))
}
