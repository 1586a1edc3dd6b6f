//! How a box proves it belongs to the site: the credentials file named by
//! `[fleet] credentials` (owner-only; `user:password` on one line, or an
//! nkey seed) and, with `tls_ca`, TLS to servers signed by that CA. A box
//! never connects without credentials.

use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context};
use async_nats::ConnectOptions;

use crate::config::FleetConfig;

/// What the credentials file holds.
#[derive(Debug, PartialEq)]
pub enum Credentials {
    Password {
        user: String,
        password: String,
    },
    /// An nkey user seed (`SU…`).
    Seed(String),
}

/// Parses the credentials file's text.
pub fn parse(text: &str) -> anyhow::Result<Credentials> {
    let line = text.trim();
    if line.lines().count() > 1 {
        bail!("expected one line (user:password, or an nkey seed starting with SU)");
    }
    if line.starts_with("SU") {
        nkeys::KeyPair::from_seed(line)
            .map_err(|e| anyhow::anyhow!("not a valid nkey seed: {e}"))?;
        return Ok(Credentials::Seed(line.to_string()));
    }
    match line.split_once(':') {
        Some((user, password)) if !user.is_empty() && !password.is_empty() => {
            Ok(Credentials::Password {
                user: user.to_string(),
                password: password.to_string(),
            })
        }
        _ => bail!("expected user:password on one line, or an nkey seed starting with SU"),
    }
}

/// Reads the credentials file, refusing one that others can read.
pub fn read(path: &Path) -> anyhow::Result<Credentials> {
    use std::os::unix::fs::PermissionsExt;
    let meta =
        std::fs::metadata(path).with_context(|| format!("fleet credentials {}", path.display()))?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        bail!(
            "fleet credentials {}: mode {mode:o} lets others read it; chmod 600 it",
            path.display()
        );
    }
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("fleet credentials {}", path.display()))?;
    parse(&text).with_context(|| format!("fleet credentials {}", path.display()))
}

/// The client options for this box: its credentials, TLS, its name, and
/// retrying in the background when no server answers at start (the box
/// runs its last cameras meanwhile).
pub fn options(cfg: &FleetConfig) -> anyhow::Result<ConnectOptions> {
    let mut o = match read(&cfg.credentials)? {
        Credentials::Password { user, password } => {
            ConnectOptions::with_user_and_password(user, password)
        }
        Credentials::Seed(seed) => ConnectOptions::with_nkey(seed),
    };
    if let Some(ca) = &cfg.tls_ca {
        if !ca.is_file() {
            bail!("fleet tls_ca {}: no such file", ca.display());
        }
        o = o.add_root_certificates(ca.clone()).require_tls(true);
    }
    Ok(o.name(format!("sightline {}", cfg.box_id))
        .connection_timeout(Duration::from_secs(3))
        .retry_on_initial_connect())
}

/// `sightline doctor`: connects with this box's credentials and asks
/// JetStream for the account, within 5 s; what it found, or why not.
pub async fn probe(cfg: &FleetConfig) -> Result<String, String> {
    let options = options(cfg).map_err(|e| format!("{e:#}"))?;
    let attempt = async {
        let client = options
            .connect(cfg.nats.clone())
            .await
            .map_err(|e| e.to_string())?;
        let js = async_nats::jetstream::new(client.clone());
        js.query_account().await.map_err(|e| e.to_string())?;
        let info = client.server_info();
        Ok(format!(
            "{} answers with JetStream (server {} {}, {} in its cluster); signed in",
            cfg.nats.join(", "),
            info.server_name,
            info.version,
            info.connect_urls.len().max(1)
        ))
    };
    tokio::time::timeout(Duration::from_secs(5), attempt)
        .await
        .map_err(|_| {
            format!(
                "no NATS server at {} answered within 5 s",
                cfg.nats.join(", ")
            )
        })?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_line_and_a_seed_are_both_credentials() {
        assert_eq!(
            parse("site:s3cret\n").unwrap(),
            Credentials::Password {
                user: "site".into(),
                password: "s3cret".into()
            }
        );
        let seed = nkeys::KeyPair::new_user().seed().unwrap();
        assert_eq!(parse(&seed).unwrap(), Credentials::Seed(seed.clone()));
    }

    #[test]
    fn anything_else_is_refused() {
        for bad in ["", "nopassword", ":x", "u:", "SUnotaseed", "a:b\nc:d"] {
            assert!(parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn a_file_others_can_read_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("creds");
        std::fs::write(&f, "u:p").unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = read(&f).unwrap_err().to_string();
        assert!(e.contains("chmod 600"), "{e}");
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(read(&f).is_ok());
    }
}
