//! Webhook signatures the Standard Webhooks way: the receiver checks
//! `webhook-signature` = `v1,` + base64(HMAC-SHA256(secret, "id.timestamp.body")),
//! with the secret given as `whsec_` + base64. During a secret rotation an
//! alert carries several secrets and every request carries one signature per
//! secret, separated by spaces, so receivers on either secret accept it.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

pub use crate::domain::Secret;

/// The `v1,<base64>` signature of one request.
pub fn sign(secret: &Secret, id: &str, timestamp: i64, body: &[u8]) -> String {
    let mut mac = match Hmac::<Sha256>::new_from_slice(secret.key()) {
        Ok(m) => m,
        // HMAC accepts keys of any length; this arm cannot be reached.
        Err(_) => return String::new(),
    };
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
}

/// The `webhook-signature` header value: one signature per secret.
pub fn header(secrets: &[Secret], id: &str, timestamp: i64, body: &[u8]) -> String {
    secrets
        .iter()
        .map(|s| sign(s, id, timestamp, body))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Whether any `v1,` signature in `header` matches (for receivers and tests).
pub fn verify(secret: &Secret, id: &str, timestamp: i64, body: &[u8], header: &str) -> bool {
    let want = sign(secret, id, timestamp, body);
    header
        .split(' ')
        .any(|sig| constant_time_eq(sig.as_bytes(), want.as_bytes()))
}

/// Compares two byte strings in time that depends only on their lengths.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The published Standard Webhooks example: secret, message id,
    /// timestamp and body, and the signature every implementation must give.
    #[test]
    fn reproduces_the_specification_test_vector() {
        let secret = Secret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").expect("valid secret");
        let sig = sign(
            &secret,
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            br#"{"test": 2432232314}"#,
        );
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn rotation_sends_one_signature_per_secret_and_either_verifies() {
        let old = Secret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").expect("old");
        let new = Secret::parse("whsec_QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo=").expect("new");
        let h = header(&[old.clone(), new.clone()], "id", 1, b"{}");
        assert_eq!(h.split(' ').count(), 2);
        assert!(verify(&old, "id", 1, b"{}", &h));
        assert!(verify(&new, "id", 1, b"{}", &h));
        assert!(
            !verify(&new, "id", 2, b"{}", &h),
            "another timestamp does not verify"
        );
        assert!(
            !verify(&new, "id", 1, b"{ }", &h),
            "another body does not verify"
        );
    }

    #[test]
    fn bad_secrets_are_refused() {
        assert!(Secret::parse("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").is_err());
        assert!(Secret::parse("whsec_***").is_err());
        assert!(Secret::parse("whsec_c2hvcnQ=").is_err());
    }
}
