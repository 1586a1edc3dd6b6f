//! A webhook signing secret, as parsed from its `whsec_<base64>` text. The
//! key bytes never appear in `Debug` output or logs.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;

/// A decoded signing secret.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Vec<u8>);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(…)")
    }
}

impl Secret {
    /// Parses `whsec_<base64>`; the key must be 24 to 64 bytes.
    pub fn parse(text: &str) -> Result<Secret, String> {
        let b64 = text
            .strip_prefix("whsec_")
            .ok_or_else(|| "a webhook secret must start with whsec_".to_string())?;
        let key = STANDARD
            .decode(b64)
            .map_err(|e| format!("the part after whsec_ is not base64: {e}"))?;
        if !(24..=64).contains(&key.len()) {
            return Err(format!(
                "a webhook secret must decode to 24-64 bytes, got {}",
                key.len()
            ));
        }
        Ok(Secret(key))
    }

    /// The key bytes (for the HMAC).
    pub fn key(&self) -> &[u8] {
        &self.0
    }

    /// The `whsec_<base64>` text [`Secret::parse`] reads.
    pub fn to_text(&self) -> String {
        format!("whsec_{}", STANDARD.encode(&self.0))
    }
}
