//! Signed media URLs. A browser or a phone notification cannot send the API
//! key header, so every media URL in a payload carries its own proof: an
//! expiry and an HMAC-SHA256 over the path and that expiry. The key is
//! derived from the API key, so changing the API key revokes every URL.

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::alert::sign::constant_time_eq;

/// Signs and checks media paths.
#[derive(Clone)]
pub struct Signer {
    key: Vec<u8>,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Signer(…)")
    }
}

fn hmac(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(key) else {
        // HMAC takes keys of any length; this cannot happen.
        return Vec::new();
    };
    for p in parts {
        mac.update(p);
        mac.update(b"\n");
    }
    mac.finalize().into_bytes().to_vec()
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

impl Signer {
    /// A signer whose key is derived from the API key.
    pub fn from_api_key(api_key: &str) -> Signer {
        Signer {
            key: hmac(api_key.as_bytes(), &[b"sightline media urls v1"]),
        }
    }

    /// The signature of `path` valid until `exp` (Unix seconds).
    pub fn sign(&self, path: &str, exp: i64) -> String {
        hex(&hmac(
            &self.key,
            &[path.as_bytes(), exp.to_string().as_bytes()],
        ))
    }

    /// `path?exp=…&sig=…`.
    pub fn signed(&self, path: &str, exp: i64) -> String {
        format!("{path}?exp={exp}&sig={}", self.sign(path, exp))
    }

    /// Whether `sig` signs `path` until `exp` and `exp` has not passed.
    pub fn check(&self, path: &str, exp: i64, sig: &str, now: i64) -> bool {
        exp >= now && constant_time_eq(self.sign(path, exp).as_bytes(), sig.as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_holds_for_its_path_until_it_expires() {
        let s = Signer::from_api_key("k");
        let sig = s.sign("/media/a/b/clip.mp4", 100);
        assert!(s.check("/media/a/b/clip.mp4", 100, &sig, 100));
        assert!(!s.check("/media/a/b/clip.mp4", 100, &sig, 101), "expired");
        assert!(!s.check("/media/a/c/clip.mp4", 100, &sig, 0), "other path");
        assert!(
            !s.check("/media/a/b/clip.mp4", 101, &sig, 0),
            "other expiry"
        );
        assert!(!Signer::from_api_key("other").check("/media/a/b/clip.mp4", 100, &sig, 0));
    }
}
