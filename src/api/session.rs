//! Console sessions. A browser signs in once with the API key (`POST
//! /session`) and gets a random session id in an HttpOnly, SameSite=Strict
//! cookie with an expiry, plus a CSRF token it must echo in `x-csrf-token`
//! on every state-changing request (SameSite=Strict already keeps the
//! cookie off cross-site requests; the token also stops other origins of
//! the same site, such as another port on the box). Sessions live in memory:
//! a daemon restart signs everybody out.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::{fail, ok, ApiState, Body};

/// Name of the session cookie.
pub const COOKIE: &str = "sightline_session";
/// Header that carries the CSRF token.
pub const CSRF_HEADER: &str = "x-csrf-token";
/// How long a session lasts after sign-in.
pub const TTL: Duration = Duration::from_secs(12 * 3600);
/// Most sessions kept at once; signing in beyond that drops the oldest.
const MAX_SESSIONS: usize = 256;

struct Session {
    csrf: String,
    expires: Instant,
}

/// Signed-in browsers, by session id.
#[derive(Default)]
pub struct Sessions(Mutex<HashMap<String, Session>>);

/// What a request's cookie says.
pub enum Seen {
    /// No session cookie, or one that is unknown or expired.
    None,
    /// A live session, with its CSRF token.
    Valid { csrf: String },
}

fn random() -> String {
    format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

impl Sessions {
    /// Starts a session; returns its id and CSRF token.
    fn open(&self) -> (String, String) {
        let (id, csrf) = (random(), random());
        if let Ok(mut m) = self.0.lock() {
            let now = Instant::now();
            m.retain(|_, s| s.expires > now);
            if m.len() >= MAX_SESSIONS {
                if let Some(oldest) = m
                    .iter()
                    .min_by_key(|(_, s)| s.expires)
                    .map(|(k, _)| k.clone())
                {
                    m.remove(&oldest);
                }
            }
            m.insert(
                id.clone(),
                Session {
                    csrf: csrf.clone(),
                    expires: now + TTL,
                },
            );
        }
        (id, csrf)
    }

    fn close(&self, id: &str) {
        if let Ok(mut m) = self.0.lock() {
            m.remove(id);
        }
    }

    /// The session a request's cookie names, if it is live.
    pub fn seen(&self, headers: &HeaderMap) -> Seen {
        let Some(id) = cookie(headers) else {
            return Seen::None;
        };
        let Ok(m) = self.0.lock() else {
            return Seen::None;
        };
        match m.get(&id) {
            Some(s) if s.expires > Instant::now() => Seen::Valid {
                csrf: s.csrf.clone(),
            },
            _ => Seen::None,
        }
    }

    /// Whether the request carries a live session.
    pub fn valid(&self, headers: &HeaderMap) -> bool {
        matches!(self.seen(headers), Seen::Valid { .. })
    }
}

/// The session id in the request's `Cookie` header(s).
fn cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v.to_string())
}

/// Whether a method changes state (and so needs the CSRF token).
pub fn unsafe_method(m: &Method) -> bool {
    !matches!(*m, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// Whether a session-borne request may go on: reads always, writes only
/// with the session's CSRF token.
pub fn csrf_ok(method: &Method, headers: &HeaderMap, csrf: &str) -> bool {
    if !unsafe_method(method) {
        return true;
    }
    let given = headers
        .get(CSRF_HEADER)
        .map(|v| v.as_bytes())
        .unwrap_or_default();
    crate::alert::sign::constant_time_eq(given, csrf.as_bytes())
}

/// `POST /session` body.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignIn {
    api_key: String,
}

fn set_cookie(st: &ApiState, value: &str, max_age: u64) -> HeaderValue {
    // Secure only where the console is reached over https: on plain http a
    // Secure cookie would never come back.
    let secure = st
        .media
        .as_ref()
        .is_some_and(|m| m.base.starts_with("https://"));
    let text = format!(
        "{COOKIE}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}{}",
        if secure { "; Secure" } else { "" }
    );
    HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// `POST /session`: exchanges the API key for a session cookie.
pub async fn sign_in(State(st): State<ApiState>, Body(b): Body<SignIn>) -> Response {
    if !crate::alert::sign::constant_time_eq(b.api_key.trim().as_bytes(), st.key.as_bytes()) {
        return fail(StatusCode::UNAUTHORIZED, "wrong API key".into());
    }
    let (id, csrf) = st.sessions.open();
    let mut r = ok(serde_json::json!({ "csrf_token": csrf, "expires_in": TTL.as_secs() }));
    r.headers_mut()
        .insert(header::SET_COOKIE, set_cookie(&st, &id, TTL.as_secs()));
    r
}

/// `GET /session`: the current session's CSRF token (so a reloaded page
/// can go on), or 401.
pub async fn current(State(st): State<ApiState>, headers: HeaderMap) -> Response {
    match st.sessions.seen(&headers) {
        Seen::Valid { csrf } => ok(serde_json::json!({ "csrf_token": csrf })),
        Seen::None => fail(StatusCode::UNAUTHORIZED, "not signed in".into()),
    }
}

/// `DELETE /session`: signs out (the key check has already asked for the
/// CSRF token).
pub async fn sign_out(State(st): State<ApiState>, headers: HeaderMap) -> Response {
    if let Some(id) = cookie(&headers) {
        st.sessions.close(&id);
    }
    let mut r = ok(serde_json::json!({ "signed_out": true })).into_response();
    r.headers_mut()
        .insert(header::SET_COOKIE, set_cookie(&st, "", 0));
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_cookie(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::COOKIE, HeaderValue::from_str(v).expect("header"));
        h
    }

    #[test]
    fn a_session_is_found_by_its_cookie_and_gone_when_closed() {
        let s = Sessions::default();
        let (id, csrf) = s.open();
        let h = with_cookie(&format!("other=1; {COOKIE}={id}"));
        assert!(matches!(s.seen(&h), Seen::Valid { csrf: c } if c == csrf));
        assert!(!s.valid(&with_cookie(&format!("{COOKIE}=nope"))));
        s.close(&id);
        assert!(!s.valid(&h));
    }

    #[test]
    fn writes_need_the_token_and_reads_do_not() {
        let mut h = HeaderMap::new();
        assert!(csrf_ok(&Method::GET, &h, "t0k"));
        assert!(!csrf_ok(&Method::POST, &h, "t0k"));
        h.insert(CSRF_HEADER, HeaderValue::from_static("wrong"));
        assert!(!csrf_ok(&Method::DELETE, &h, "t0k"));
        h.insert(CSRF_HEADER, HeaderValue::from_static("t0k"));
        assert!(csrf_ok(&Method::PATCH, &h, "t0k"));
    }
}
