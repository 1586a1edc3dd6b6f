//! The control API: HTTP routes in the shape VideoDB's Python SDK calls
//! (so `videodb.connect(api_key=…, base_url="http://box:8420")` drives the
//! daemon), plus the WebSocket channel the SDK's `connect_websocket` opens.
//!
//! Every HTTP route needs the API key in `x-access-token`, loopback
//! included. Replies use the SDK's envelope: `{"success": true, "data": …}`,
//! or `{"success": false, "message": …}` with a 4xx/5xx status. Bodies are
//! capped at 64 KiB. The route table in [`routes`] is the router, and the
//! OpenAPI file in `docs/openapi.json` is checked against it by a test.

pub mod bodies;
pub mod conns;
mod console;
mod forward;
mod handlers;
mod history;
mod key;
mod media;
mod metrics;
mod player;
mod routes;
mod session;
mod socket;
mod views;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;
use serde::Serialize;

use crate::control::{Engine, Refusal};
pub use key::{key_path, load_key};
pub use media::Media;
pub use routes::{Route, ROUTES};

/// Largest request body accepted.
pub const MAX_BODY: usize = 64 * 1024;

/// Shared by every handler.
#[derive(Clone)]
pub struct ApiState {
    pub engine: Arc<Engine>,
    key: Arc<str>,
    tickets: Arc<socket::Tickets>,
    /// Signed-in console browsers.
    sessions: Arc<session::Sessions>,
    /// Where the API listens, for the `websocket_url` when a request has no Host.
    addr: SocketAddr,
    /// Recordings, clips and snapshots, when recording is on.
    media: Option<Arc<Media>>,
}

/// Serves the API on `listener` until the returned sender is used (or
/// dropped); the task ends when the server has shut down.
pub fn serve(
    listener: tokio::net::TcpListener,
    key: String,
    engine: &Arc<Engine>,
    media: Option<Arc<Media>>,
    bound: Option<tokio::sync::oneshot::Sender<SocketAddr>>,
) -> anyhow::Result<(
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<()>,
)> {
    let addr = listener.local_addr()?;
    tracing::info!(%addr, "API listening");
    if let Some(tx) = bound {
        let _ = tx.send(addr);
    }
    let key: Arc<str> = key.into();
    let stats = Arc::new(conns::ConnStats::default());
    let app = router(Arc::clone(engine), key.to_string(), addr, media)
        .layer(axum::Extension(Arc::clone(&stats)));
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(conns::serve(listener, app, key, stats, stop_rx));
    Ok((stop_tx, task))
}

/// Builds the router: the route table, the key check, the body cap.
pub fn router(
    engine: Arc<Engine>,
    key: String,
    addr: SocketAddr,
    media: Option<Arc<Media>>,
) -> Router {
    let state = ApiState {
        engine,
        key: key.into(),
        tickets: Arc::default(),
        sessions: Arc::default(),
        addr,
        media,
    };
    routes::build(state.clone())
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            forward::to_owner,
        ))
        .layer(axum::middleware::from_fn_with_state(state, require_key))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY))
}

/// Refuses a request that has neither the right `x-access-token` nor a
/// console session; a session's state-changing requests also need its CSRF
/// token. The WebSocket route authenticates with its one-time ticket
/// instead (browsers and the SDK's client cannot set headers on a
/// WebSocket), media URLs with a signature or a session, and the console's
/// pages and assets check the session themselves (they redirect to sign-in).
async fn require_key(
    axum::extract::State(st): axum::extract::State<ApiState>,
    req: Request,
    next: Next,
) -> Response {
    let path = req.uri().path();
    let public_metrics = path == "/metrics" && st.engine.parts().metrics_public;
    let signing_in = path == "/session" && req.method() != axum::http::Method::DELETE;
    if path.starts_with(socket::WS_PREFIX)
        || path.starts_with("/media/")
        || public_metrics
        || signing_in
        || console::is_public(path)
    {
        return next.run(req).await;
    }
    let given = req
        .headers()
        .get("x-access-token")
        .map(|v| v.as_bytes())
        .unwrap_or_default();
    if crate::alert::sign::constant_time_eq(given, st.key.as_bytes()) {
        return next.run(req).await;
    }
    match st.sessions.seen(req.headers()) {
        session::Seen::Valid { csrf } if session::csrf_ok(req.method(), req.headers(), &csrf) => {
            next.run(req).await
        }
        session::Seen::Valid { .. } => fail(
            StatusCode::FORBIDDEN,
            format!(
                "a console session must send its CSRF token in {}",
                session::CSRF_HEADER
            ),
        ),
        session::Seen::None => fail(
            StatusCode::UNAUTHORIZED,
            "missing or wrong x-access-token (or no console session)".into(),
        ),
    }
}

#[derive(Serialize)]
struct Envelope<T: Serialize> {
    success: bool,
    data: T,
}

#[derive(Serialize)]
struct ErrorEnvelope {
    success: bool,
    status: u16,
    message: String,
}

/// A success reply.
pub fn ok<T: Serialize>(data: T) -> Response {
    axum::Json(Envelope {
        success: true,
        data,
    })
    .into_response()
}

/// An error reply.
pub fn fail(status: StatusCode, message: String) -> Response {
    (
        status,
        axum::Json(ErrorEnvelope {
            success: false,
            status: status.as_u16(),
            message,
        }),
    )
        .into_response()
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let status = match &self {
            Refusal::NotFound(_) => StatusCode::NOT_FOUND,
            Refusal::BadRequest(_) => StatusCode::BAD_REQUEST,
            Refusal::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Refusal::Conflict(_) => StatusCode::CONFLICT,
            Refusal::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Refusal::Internal(m) => {
                tracing::error!(error = %m, "API request failed");
                StatusCode::INTERNAL_SERVER_ERROR
            }
        };
        fail(status, self.to_string())
    }
}

/// `Json<T>` whose rejections (bad JSON 400, wrong fields 422, too large
/// 413, wrong content type 415) come in the envelope with a clear message.
pub struct Body<T>(pub T);

impl<S, T> FromRequest<S> for Body<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = Response;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(Body(v)),
            Err(r) => Err(fail(r.status(), r.body_text())),
        }
    }
}
