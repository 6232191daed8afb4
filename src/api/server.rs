//! The ECS API's HTTP server: its own accept loop, so that no client can hold a node's sockets
//! or its request handlers for as long as it likes.
//!
//! - A connection must send a request's headers within `header_read_timeout`, and an idle
//!   keep-alive connection is closed after the same time (hyper starts the timer again after
//!   each response).
//! - At most `max_connections` connections are served at once. Over the cap, a connection gets
//!   one `ThrottlingException` answer and is closed, instead of waiting unseen in the backlog.
//! - At most `max_in_flight` requests are handled at once ([`throttle`]); over the cap, a
//!   request gets `ThrottlingException` at once (AWS SDKs back off and retry it).
//! - A request's body must arrive within `body_timeout` (`RequestTimeoutException`, in
//!   `api::serve`), and a whole request is bounded by `request_timeout` ([`deadline`]).
//! - On shutdown, connections drain for at most `drain` and are then dropped.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use super::error::ApiError;

/// What bounds the server's connections and requests.
#[derive(Debug, Clone)]
pub struct Limits {
    pub header_read_timeout: Duration,
    pub body_timeout: Duration,
    pub request_timeout: Duration,
    pub max_connections: usize,
    pub max_in_flight: usize,
    /// How long open connections may drain on shutdown.
    pub drain: Duration,
}

impl Limits {
    pub fn of(api: &crate::config::ApiTuning) -> Limits {
        let ms = Duration::from_millis;
        Limits {
            header_read_timeout: ms(api.header_read_timeout_ms),
            body_timeout: ms(api.body_timeout_ms),
            request_timeout: ms(api.request_timeout_ms),
            max_connections: api.max_connections,
            max_in_flight: api.max_in_flight,
            // A held write finishes within hold_ms; a little more lets its answer go out.
            drain: ms(api.hold_ms + 1_000),
        }
    }
}

/// The answer to a connection over the cap, written before its request is read.
fn over_capacity_answer() -> Vec<u8> {
    let e = ApiError::Throttling("Rate exceeded: too many connections to this node".into());
    let body = e.body().to_string();
    format!(
        "HTTP/1.1 {}\r\ncontent-type: {}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        e.status(),
        ecsd_protocol::ecs::CONTENT_TYPE,
        body.len()
    )
    .into_bytes()
}

/// Serves `app` on `listener` until `shutdown`, within `limits`: over TLS with `tls` (the
/// handshake within the header-read timeout), else in clear.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    shutdown: CancellationToken,
    tls: Option<tokio_rustls::TlsAcceptor>,
) {
    // HTTP/1.1, as the AWS SDKs and the CLI speak to ECS. Its header-read timer runs from the
    // moment a connection is served (accepted, or after its TLS handshake, which has a bound of
    // its own), and again after every answer.
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    let builder = Arc::new(builder);
    let connections = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
    loop {
        let (stream, peer) = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors, or a connection reset before it was accepted:
                    // pause rather than spin.
                    tracing::warn!(error = %e, "accepting an API connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let Ok(permit) = connections.clone().try_acquire_owned() else {
            metrics::counter!("ecsd_api_connections_refused_total").increment(1);
            tokio::spawn(async move {
                let mut stream = stream;
                let _ = tokio::time::timeout(Duration::from_secs(1), stream.write_all(&over_capacity_answer())).await;
                let _ = stream.shutdown().await;
            });
            continue;
        };
        let builder = builder.clone();
        // Each request knows the address it came from (the audit log names it), and the
        // identity of the client certificate its connection presented, if any.
        let app = app.clone();
        let service = move |client: Option<crate::tls::Identity>| {
            TowerToHyperService::new(tower::ServiceExt::map_request(
                app,
                move |mut request: axum::http::Request<hyper::body::Incoming>| {
                    request.extensions_mut().insert(axum::extract::ConnectInfo(peer));
                    if let Some(client) = &client {
                        request.extensions_mut().insert(ClientCertificate(client.clone()));
                    }
                    request
                },
            ))
        };
        let watcher = graceful.watcher();
        let tls = tls.clone();
        let handshake_within = limits.header_read_timeout;
        tokio::spawn(async move {
            match tls {
                None => {
                    let _ = watcher
                        .watch(builder.serve_connection(TokioIo::new(stream), service(None)))
                        .await;
                }
                Some(tls) => match tokio::time::timeout(handshake_within, tls.accept(stream)).await {
                    Ok(Ok(stream)) => {
                        let client = stream
                            .get_ref()
                            .1
                            .peer_certificates()
                            .and_then(|chain| chain.first())
                            .and_then(|cert| crate::tls::identity_of(cert));
                        let _ = watcher
                            .watch(builder.serve_connection(TokioIo::new(stream), service(client)))
                            .await;
                    }
                    Ok(Err(e)) => {
                        metrics::counter!("ecsd_api_tls_handshake_failures_total").increment(1);
                        tracing::debug!(%peer, error = %e, "TLS handshake failed");
                    }
                    Err(_) => {
                        metrics::counter!("ecsd_api_tls_handshake_failures_total").increment(1);
                        tracing::debug!(%peer, "TLS handshake timed out");
                    }
                },
            }
            drop(permit);
        });
    }
    if tokio::time::timeout(limits.drain, graceful.shutdown()).await.is_err() {
        tracing::warn!(drain = ?limits.drain, "API connections still open at shutdown were dropped");
    }
}

/// The identity of the certificate a request's TLS connection presented (verified against the
/// cluster's CA during the handshake).
#[derive(Debug, Clone)]
pub struct ClientCertificate(pub crate::tls::Identity);

/// One request counted in `ecsd_api_requests_in_flight` while it lives (however it ends: a
/// request dropped when its client goes is counted out too).
struct InFlight(metrics::Gauge);

impl InFlight {
    fn count() -> InFlight {
        let gauge = metrics::gauge!("ecsd_api_requests_in_flight");
        gauge.increment(1.0);
        InFlight(gauge)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.decrement(1.0);
    }
}

/// The in-flight cap: a request over it is answered `ThrottlingException` at once.
pub async fn throttle(State(slots): State<Arc<Semaphore>>, request: Request, next: Next) -> Response {
    let Ok(_slot) = slots.try_acquire() else {
        metrics::counter!("ecsd_api_requests_throttled_total").increment(1);
        return super::error_response(&ApiError::Throttling("Rate exceeded".into()));
    };
    let _counted = InFlight::count();
    next.run(request).await
}

/// The whole-request bound: a request still unanswered after it gets a `ServerException`
/// (the server's own slowness; a slow body has its own, shorter bound).
pub async fn deadline(State(within): State<Duration>, request: Request, next: Next) -> Response {
    match tokio::time::timeout(within, next.run(request)).await {
        Ok(response) => response,
        Err(_) => super::error_response(&ApiError::Server(format!(
            "the request was not answered within {} s; a write in it may still apply",
            within.as_secs()
        ))),
    }
}
