//! Media routes: snapshots, clip playlists and segments, clip MP4s (with
//! range requests, so browsers can seek) and the player page. A browser
//! cannot send the API key, so these routes take no key: each URL carries
//! an expiry and a signature over its path instead, and a URL that is
//! unsigned, tampered with or expired gets 403 and no bytes. Paths are
//! built from checked names only (stream and occurrence ids, segment start
//! times), never from the request as given.

use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::{fail, ApiState};
use crate::clock::Clocks;
use crate::record::{clips, safe_name, Recorder};
use crate::store::{ClipRow, Store};

/// What the media routes serve from.
pub struct Media {
    pub recorder: Arc<Recorder>,
    pub store: Arc<Store>,
    pub clocks: Arc<dyn Clocks>,
    pub time_bases: Arc<crate::scene::TimeBases>,
    /// `scheme://host:port` of the links handed out.
    pub base: String,
}

/// `?exp=…&sig=…[&boxes=false]`.
#[derive(Deserialize)]
pub struct Signed {
    exp: Option<i64>,
    sig: Option<String>,
    boxes: Option<bool>,
}

fn forbidden() -> Response {
    fail(
        StatusCode::FORBIDDEN,
        "this media URL is not signed, or its signature is wrong or expired".into(),
    )
}

fn not_found(what: &str) -> Response {
    fail(StatusCode::NOT_FOUND, format!("no {what}"))
}

impl Media {
    /// Whether the request's path carries a valid signature.
    fn allowed(&self, path: &str, q: &Signed) -> bool {
        match (q.exp, q.sig.as_deref()) {
            (Some(exp), Some(sig)) => {
                let now = self.recorder.steady_ms() / 1000;
                self.recorder.signer.check(path, exp, sig, now)
            }
            _ => false,
        }
    }

    /// Whether the request may have the media, and until when the links it
    /// hands on stay valid: a signed URL's own expiry, or for a console
    /// session the configured lifetime from now.
    fn permit(&self, path: &str, q: &Signed, session: bool) -> Option<i64> {
        if self.allowed(path, q) {
            return q.exp;
        }
        session.then(|| self.recorder.link_expiry())
    }

    /// A signed URL path for `path`, valid as long as the one it came from.
    fn sign(&self, path: &str, exp: i64) -> String {
        self.recorder.signer.signed(path, exp)
    }

    async fn clip(&self, occ: &str) -> Option<ClipRow> {
        let (store, occ) = (Arc::clone(&self.store), occ.to_string());
        tokio::task::spawn_blocking(move || store.clip(&occ))
            .await
            .ok()?
            .ok()
            .flatten()
    }

    /// The clip's span with pre- and post-roll, and whether it has ended.
    fn span(&self, c: &ClipRow) -> (i64, i64, bool) {
        let s = &self.recorder.settings;
        let from = c.start_ms - s.pre.as_millis() as i64;
        match c.end_ms {
            Some(end) => (from, end + s.post.as_millis() as i64, true),
            None => (from, self.clocks.wall_ms(), false),
        }
    }

    fn playlist(&self, stream: &str, from: i64, to: i64, ended: bool, exp: i64) -> String {
        let segs: Vec<_> = self
            .recorder
            .covering(stream, from, to)
            .into_iter()
            .map(|(_, s)| s)
            .collect();
        let ended = ended
            && segs
                .last()
                .is_some_and(|s| s.end_ms.is_some_and(|e| e >= to));
        clips::playlist(&segs, ended, |s| {
            self.sign(&format!("/media/{stream}/seg/{}", s.name()), exp)
        })
    }

    /// The MP4 of `[from, to]`, remuxed from the closed segments. With
    /// `keep` (a complete occurrence clip, which retention deletes with the
    /// clip) it is remuxed once into `<keep>.mp4`; otherwise into a file of
    /// this request's own that [`served_once`] deletes once it is read.
    async fn mp4(
        &self,
        stream: &str,
        from: i64,
        to: i64,
        keep: Option<&str>,
    ) -> Result<PathBuf, String> {
        let dir = self.recorder.evidence_dir();
        let out = match keep {
            Some(occ) => dir.join(format!("{occ}.mp4")),
            None => dir.join(format!("once-{}.mp4", uuid::Uuid::new_v4())),
        };
        if keep.is_some() && out.is_file() {
            return Ok(out);
        }
        let files: Vec<PathBuf> = self
            .recorder
            .covering(stream, from, to)
            .into_iter()
            .filter(|(_, s)| s.end_ms.is_some())
            .map(|(p, _)| p)
            .collect();
        let target = out.clone();
        tokio::task::spawn_blocking(move || {
            std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
            clips::remux_mp4(&files, &target)
        })
        .await
        .map_err(|e| e.to_string())??;
        Ok(out)
    }
}

/// Serves a file, honouring a single `Range: bytes=…` request.
async fn file(path: &FsPath, kind: &'static str, headers: &HeaderMap) -> Response {
    let Ok(bytes) = tokio::fs::read(path).await else {
        return not_found("such file");
    };
    let total = bytes.len();
    let range = headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("bytes="))
        .and_then(|r| r.split_once('-'))
        .and_then(|(a, b)| {
            let start: usize = if a.is_empty() {
                total.saturating_sub(b.parse().ok()?)
            } else {
                a.parse().ok()?
            };
            let end: usize = if a.is_empty() || b.is_empty() {
                total.checked_sub(1)?
            } else {
                b.parse::<usize>().ok()?.min(total.checked_sub(1)?)
            };
            (start <= end).then_some((start, end))
        });
    let mut h = HeaderMap::new();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, max-age=60"),
    );
    match range {
        Some((a, b)) => {
            if let Ok(v) = HeaderValue::from_str(&format!("bytes {a}-{b}/{total}")) {
                h.insert(header::CONTENT_RANGE, v);
            }
            (StatusCode::PARTIAL_CONTENT, h, bytes[a..=b].to_vec()).into_response()
        }
        None if headers.contains_key(header::RANGE) => {
            if let Ok(v) = HeaderValue::from_str(&format!("bytes */{total}")) {
                h.insert(header::CONTENT_RANGE, v);
            }
            (StatusCode::RANGE_NOT_SATISFIABLE, h).into_response()
        }
        None => (StatusCode::OK, h, bytes).into_response(),
    }
}

/// Serves an MP4 made for one request, then deletes it (nothing else
/// would: only complete occurrence clips are kept, and retention owns those).
async fn served_once(path: &FsPath, headers: &HeaderMap) -> Response {
    let r = file(path, "video/mp4", headers).await;
    let _ = tokio::fs::remove_file(path).await;
    r
}

fn media(st: &ApiState) -> Option<&Arc<Media>> {
    st.media.as_ref()
}

/// `GET /media/{stream}/{occurrence}/{what}`: `snapshot.jpg`, `clip.m3u8`,
/// `clip.mp4` or `player`.
pub async fn occurrence(
    State(st): State<ApiState>,
    uri: Uri,
    Path((stream, occ, what)): Path<(String, String, String)>,
    Query(q): Query<Signed>,
    headers: HeaderMap,
) -> Response {
    let Some(m) = media(&st) else {
        return not_found("recording on this daemon");
    };
    let permit = m.permit(uri.path(), &q, st.sessions.valid(&headers));
    let Some(exp) = permit.filter(|_| safe_name(&stream) && safe_name(&occ)) else {
        return forbidden();
    };
    let dir = m.recorder.evidence_dir();
    let row = m.clip(&occ).await.filter(|c| c.stream_id == stream);
    if let Some(reason) = row.as_ref().and_then(|c| c.expired.as_deref()) {
        let why = format!("the evidence of occurrence {occ} is gone: {reason}");
        return fail(StatusCode::GONE, why);
    }
    if what == "snapshot.jpg" {
        let name = if q.boxes == Some(false) {
            format!("{occ}-clean.jpg")
        } else {
            format!("{occ}.jpg")
        };
        return file(&dir.join(name), "image/jpeg", &headers).await;
    }
    let Some(c) = row else {
        return not_found("clip for this occurrence");
    };
    let (from, to, ended) = m.span(&c);
    match what.as_str() {
        "clip.m3u8" => hls(m.playlist(&stream, from, to, ended, exp)),
        "clip.mp4" => match m
            .mp4(&stream, from, to, ended.then_some(occ.as_str()))
            .await
        {
            Ok(p) if ended => file(&p, "video/mp4", &headers).await,
            Ok(p) => served_once(&p, &headers).await,
            Err(e) => fail(StatusCode::NOT_FOUND, e),
        },
        "player" => {
            let url = |w: &str| m.sign(&format!("/media/{stream}/{occ}/{w}"), exp);
            let title = format!("{} on {}", c.label, c.stream_id);
            let snap = url("snapshot.jpg");
            super::player::page(Some(&c), &title, ended, &url("clip.mp4"), Some(&snap))
        }
        _ => not_found("such media"),
    }
}

fn hls(text: String) -> Response {
    (
        [
            (header::CONTENT_TYPE, "application/vnd.apple.mpegurl"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        text,
    )
        .into_response()
}

/// `GET /media/{stream}/seg/{start}.ts`: one recorded segment.
pub async fn segment(
    State(st): State<ApiState>,
    uri: Uri,
    Path((stream, name)): Path<(String, String)>,
    Query(q): Query<Signed>,
    headers: HeaderMap,
) -> Response {
    let Some(m) = media(&st) else {
        return not_found("recording on this daemon");
    };
    let start = name.strip_suffix(".ts").and_then(|n| n.parse::<i64>().ok());
    let permit = m.permit(uri.path(), &q, st.sessions.valid(&headers));
    let (Some(_), true, Some(start)) = (permit, safe_name(&stream), start) else {
        return forbidden();
    };
    let path = m.recorder.dir().join(&stream).join(format!("{start}.ts"));
    file(&path, "video/mp2t", &headers).await
}

/// `GET /media/{stream}/range/{from}-{to}/{what}`: the playlist
/// (`clip.m3u8`) or MP4 (`clip.mp4`) of any recorded span, in Unix ms.
pub async fn span(
    State(st): State<ApiState>,
    uri: Uri,
    Path((stream, span, what)): Path<(String, String, String)>,
    Query(q): Query<Signed>,
    headers: HeaderMap,
) -> Response {
    let Some(m) = media(&st) else {
        return not_found("recording on this daemon");
    };
    let parsed = span
        .split_once('-')
        .and_then(|(a, b)| Some((a.parse::<i64>().ok()?, b.parse::<i64>().ok()?)));
    let permit = m.permit(uri.path(), &q, st.sessions.valid(&headers));
    let (Some(exp), true, Some((from, to))) = (permit, safe_name(&stream), parsed) else {
        return forbidden();
    };
    let ended = to <= m.clocks.wall_ms();
    match what.as_str() {
        "clip.m3u8" => hls(m.playlist(&stream, from, to, ended, exp)),
        "clip.mp4" => match m.mp4(&stream, from, to, None).await {
            Ok(p) => served_once(&p, &headers).await,
            Err(e) => fail(StatusCode::NOT_FOUND, e),
        },
        "player" => {
            let mp4 = m.sign(&format!("/media/{stream}/range/{span}/clip.mp4"), exp);
            super::player::page(None, &format!("{stream}: recording"), ended, &mp4, None)
        }
        _ => not_found("such media"),
    }
}

/// Signed links to a span of a stream's recording (the SDK's
/// `generate_stream`), valid for the configured lifetime.
pub fn span_links(m: &Media, base: &str, stream: &str, from: i64, to: i64) -> [String; 3] {
    let exp = m.recorder.link_expiry();
    let path = |w: &str| {
        format!(
            "{base}{}",
            m.sign(&format!("/media/{stream}/range/{from}-{to}/{w}"), exp)
        )
    };
    [path("clip.m3u8"), path("clip.mp4"), path("player")]
}
