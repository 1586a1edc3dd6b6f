//! The API key: read from a file (or a systemd credential), generated into
//! the state directory on first start when neither is given. Never taken
//! from the command line, where `ps` would show it.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context};

use crate::config::ApiConfig;

/// Name of the key file in the state directory and of the systemd credential.
pub const KEY_NAME: &str = "api-key";

/// Where the key comes from: `[api] key_file`, else the systemd credential
/// `api-key`, else `<state dir>/api-key`.
pub fn key_path(api: &ApiConfig, state_dir: Option<&Path>) -> anyhow::Result<PathBuf> {
    if let Some(p) = &api.key_file {
        return Ok(p.clone());
    }
    if let Some(dir) = std::env::var_os("CREDENTIALS_DIRECTORY") {
        let p = PathBuf::from(dir).join(KEY_NAME);
        if p.exists() {
            return Ok(p);
        }
    }
    state_dir.map(|d| d.join(KEY_NAME)).ok_or_else(|| {
        anyhow!("the API needs a key: set [api] key_file, or [state] dir where one is generated")
    })
}

/// Reads the key, generating `<state dir>/api-key` (mode 0600) if that is
/// where it should be and it does not exist yet.
pub fn load_key(api: &ApiConfig, state_dir: Option<&Path>) -> anyhow::Result<String> {
    let path = key_path(api, state_dir)?;
    let generated = state_dir.is_some_and(|d| path == d.join(KEY_NAME));
    if generated && !path.exists() {
        if let Some(d) = path.parent() {
            std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
        }
        let key = format!(
            "{}{}",
            uuid::Uuid::new_v4().simple(),
            uuid::Uuid::new_v4().simple()
        );
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .with_context(|| format!("creating the API key file {}", path.display()))?;
        writeln!(f, "{key}")?;
        tracing::info!(path = %path.display(), "generated a new API key");
    }
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("reading the API key file {}", path.display()))?;
    if let Ok(meta) = std::fs::metadata(&path) {
        if meta.permissions().mode() & 0o004 != 0 {
            tracing::warn!(path = %path.display(), "the API key file is world-readable");
        }
    }
    let key = text.trim().to_string();
    if key.len() < 16 || key.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(anyhow!(
            "{}: the API key must be one line of at least 16 printable characters",
            path.display()
        ));
    }
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(key_file: Option<PathBuf>) -> ApiConfig {
        ApiConfig {
            listen: "127.0.0.1:0".parse().expect("address"),
            key_file,
            ws_buffer: 8,
            ws_resume_messages: 100,
            ws_resume: std::time::Duration::from_secs(3600),
            allow_local_sources: false,
            public_url: None,
            metrics_public: false,
        }
    }

    #[test]
    fn a_key_is_generated_once_private_and_reused() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let k1 = load_key(&api(None), Some(dir.path()))?;
        let k2 = load_key(&api(None), Some(dir.path()))?;
        assert_eq!(k1, k2);
        assert_eq!(k1.len(), 64);
        let mode = std::fs::metadata(dir.path().join(KEY_NAME))?
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        Ok(())
    }

    #[test]
    fn a_short_or_missing_key_file_is_refused() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let f = dir.path().join("k");
        std::fs::write(&f, "short\n")?;
        assert!(load_key(&api(Some(f.clone())), None).is_err());
        assert!(load_key(&api(Some(dir.path().join("none"))), None).is_err());
        std::fs::write(&f, "0123456789abcdef0123\n")?;
        assert_eq!(load_key(&api(Some(f)), None)?, "0123456789abcdef0123");
        Ok(())
    }

    #[test]
    fn comparison_needs_every_byte() {
        use crate::alert::sign::constant_time_eq as same;
        assert!(same(b"abc", b"abc"));
        assert!(!same(b"abc", b"abd"));
        assert!(!same(b"abc", b"ab"));
    }
}
