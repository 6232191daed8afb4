//! The ECS HTTP API (AWS JSON 1.1 at `POST /`) and the cluster admin endpoints.
//!
//! The API only translates: it validates wire input, stamps a [`Proposal`] (time, request id,
//! ARNs) and proposes it, or runs a query after a read barrier, and maps outcomes back to ECS
//! JSON. It holds no state of its own.

mod account_settings;
mod admin;
pub use admin::{BACKUP_INDEX_HEADER, BACKUP_SHA256_HEADER, BACKUP_TERM_HEADER};
mod attributes;
pub mod auth;
mod clusters;
mod container_instances;
pub mod error;
pub mod health;
pub mod server;
mod services;
mod tags;
mod task_definitions;
mod tasks;
mod wire;

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::model::{ArnScope, Caller};
use crate::raft::requests::{ForwardedReply, ForwardedRequest, RequestHandler};
use crate::raft::state_machine::StateView;
use crate::raft::RaftNode;
use crate::stamp;
use crate::state::{Command, Outcome};
pub use error::{invalid, ApiError};

/// The JSON 1.1 target prefix of the 2014-11-13 ECS API.
pub use ecsd_protocol::ecs::TARGET_PREFIX;
/// Header that opts a read into stale (local, non-linearizable) consistency.
pub const CONSISTENCY_HEADER: &str = "x-ecsd-consistency";
use ecsd_protocol::ecs::CONTENT_TYPE;

/// Every action of the 2014-11-13 reference, and the later ones today's clients call, each with
/// its handler in `dispatch` (`tests/it/api.rs` checks that none answers
/// `UnsupportedFeatureException`).
pub const ACTIONS: &[&str] = &[
    "CreateCluster",
    "CreateService",
    "DeleteAccountSetting",
    "DeleteAttributes",
    "DeleteCluster",
    "DeleteService",
    "DeregisterContainerInstance",
    "DeregisterTaskDefinition",
    "DescribeClusters",
    "DescribeContainerInstances",
    "DescribeServices",
    "DescribeTaskDefinition",
    "DescribeTasks",
    "DiscoverPollEndpoint",
    "ListAccountSettings",
    "ListAttributes",
    "ListClusters",
    "ListContainerInstances",
    "ListServices",
    "ListTagsForResource",
    "ListTaskDefinitionFamilies",
    "ListTaskDefinitions",
    "ListTasks",
    "PutAccountSetting",
    "PutAccountSettingDefault",
    "PutAttributes",
    "RegisterContainerInstance",
    "RegisterTaskDefinition",
    "RunTask",
    "StartTask",
    "StopTask",
    "SubmitContainerStateChange",
    "SubmitTaskStateChange",
    "TagResource",
    "UntagResource",
    "UpdateCluster",
    "UpdateClusterSettings",
    "UpdateContainerAgent",
    "UpdateContainerInstancesState",
    "UpdateService",
    "PutClusterCapacityProviders",
    "ListServicesByNamespace",
    "DeleteTaskDefinitions",
    "UpdateTaskProtection",
    "GetTaskProtection",
    "CreateCapacityProvider",
    "DescribeCapacityProviders",
];

/// Shared by every request.
pub struct ApiState {
    pub node: RaftNode,
    pub scope: ArnScope,
    pub max_body_bytes: usize,
    /// This node's API address as clients should reach it (DiscoverPollEndpoint).
    pub advertised_api_addr: String,
    /// Where agents reach this node's agent service (gRPC, on the node-to-node port).
    pub advertised_agent_addr: String,
    /// Bounds on connections, requests and their time.
    pub limits: server::Limits,
    /// Who may call (SigV4 and roles).
    pub auth: auth::Authenticator,
    /// Whether this node serves TLS (HTTPS here, mutual TLS to agents).
    pub tls: bool,
    /// What `/readyz` checks beyond Raft.
    pub health: health::Health,
    /// Set once the applied cluster version reached 2 ([`Ctx::modern`]): it never goes down,
    /// so from then on no request reads it.
    pub modern: std::sync::atomic::AtomicBool,
}

/// How a read is served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Consistency {
    /// After a read barrier: reflects every write acknowledged before the request (default).
    Linearizable,
    /// From this node's replica at once; may miss recent writes. Opt-in only.
    Stale,
}

/// One request's context.
pub struct Ctx<'a> {
    pub state: &'a ApiState,
    pub request_id: &'a str,
    pub consistency: Consistency,
    /// A stable hash of the request body: with a client token it identifies a retry.
    pub body_digest: u64,
    /// A digest of the action and the body: what a proposal's request id stands for.
    pub request_digest: u64,
    /// The request body as received (for forwarding to the leader).
    pub body: &'a [u8],
    /// Whether another node forwarded this request here.
    pub forwarded: bool,
    /// Who made the request (verified where it arrived).
    pub caller: &'a Caller,
}

impl Ctx<'_> {
    /// The replica to read from, after a read barrier unless the client opted into stale reads.
    pub async fn read_view(&self) -> Result<&StateView, ApiError> {
        if self.consistency == Consistency::Linearizable {
            self.state.node.handle().read_barrier().await?;
        }
        Ok(self.state.node.handle().view())
    }

    /// Sends this request to the leader when another node leads (placement runs on the leader),
    /// over the node-to-node port, and relays its answer. `None`: handle it here (this node
    /// leads, no leader is known or reachable, or the request was already forwarded).
    pub async fn forward_to_leader(&self, action: &str) -> Option<Result<Value, ApiError>> {
        if self.forwarded {
            return None;
        }
        let request = ForwardedRequest {
            action: action.to_string(),
            request_id: self.request_id.to_string(),
            caller: Some(self.caller.clone()),
        };
        let reply = self.state.node.handle().forward_request(&request, self.body).await?;
        if reply.status == 200 {
            return Some(Ok(reply.body));
        }
        Some(Err(ApiError::Relayed {
            status: reply.status,
            kind: reply.body["__type"].as_str().unwrap_or("ServerException").to_string(),
            message: reply.body["message"].as_str().unwrap_or_default().to_string(),
        }))
    }

    /// Runs `query` against this node's replica on the blocking pool, off the runtime that
    /// drives Raft: a long scan must not hold up heartbeats and replication. Call it after the
    /// read barrier ([`Ctx::read_view`]).
    pub async fn off_runtime<T: Send + 'static>(
        &self,
        query: impl FnOnce(&StateView) -> Result<T, ApiError> + Send + 'static,
    ) -> Result<T, ApiError> {
        let view = self.state.node.handle().view().clone();
        tokio::task::spawn_blocking(move || query(&view))
            .await
            .map_err(|e| ApiError::Server(format!("a query failed: {e}")))?
    }

    /// [`Ctx::read_view`], after which the cluster `name` must exist (ACTIVE or INACTIVE).
    pub async fn cluster_view(&self, name: &str) -> Result<&StateView, ApiError> {
        let view = self.read_view().await?;
        if crate::state::get_cluster(view, name)?.is_none() {
            return Err(ApiError::cluster_not_found());
        }
        Ok(view)
    }

    /// Whether the cluster version is at least 2 (`state::identity`): every member runs a build
    /// that applies today's ECS commands and fields alike. Below it, requests keep the 2018
    /// behaviour, and what only level 2 can apply is refused ([`Ctx::require_modern`]).
    pub fn modern(&self) -> bool {
        use std::sync::atomic::Ordering;
        if self.state.modern.load(Ordering::Relaxed) {
            return true;
        }
        let modern = crate::state::identity::cluster_version(self.state.node.handle().view()).unwrap_or(1) >= 2;
        if modern {
            self.state.modern.store(true, Ordering::Relaxed);
        }
        modern
    }

    /// `Ok` when [`Ctx::modern`]; else `what` is refused until every member is upgraded.
    pub fn require_modern(&self, what: &str) -> Result<(), ApiError> {
        if self.modern() {
            return Ok(());
        }
        Err(ApiError::Unsupported(format!(
            "{what} needs every node of the cluster to run a build of feature level {} (the cluster version is 1: a member runs an earlier build); the leader raises the version once every member reports it",
            crate::state::identity::FEATURE_LEVEL
        )))
    }

    /// Stamps `command` with this request's id and time and commits it.
    pub async fn propose(&self, command: Command) -> Result<Outcome, ApiError> {
        let mut proposal = stamp::proposal_as(self.request_id.to_string(), command);
        proposal.request_digest = Some(self.request_digest);
        Ok(self.state.node.write(proposal).await?)
    }

    /// Like [`Ctx::propose`], but keyed by the client's token and the request body: a retry of
    /// the same request (to any node, within a day) applies once and gets the first outcome.
    pub async fn propose_idempotent(&self, action: &str, token: &str, command: Command) -> Result<Outcome, ApiError> {
        let request_id = format!("{action}/{token}/{:016x}", self.body_digest);
        let mut proposal = stamp::proposal_as(request_id, command);
        proposal.request_digest = Some(self.request_digest);
        Ok(self.state.node.write(proposal).await?)
    }
}

/// The cluster a request names (default `default`), if it can exist here.
pub(super) fn cluster_name(ctx: &Ctx<'_>, cluster: Option<&str>) -> Result<String, ApiError> {
    let id = cluster.unwrap_or("default");
    match ctx.state.scope.cluster_name(id) {
        Some(name) if crate::model::valid_cluster_name(name) => Ok(name.to_string()),
        _ => Err(ApiError::cluster_not_found()),
    }
}

/// The API router: `POST /` for ECS, `/cluster/*` for admin, `/health`, `/livez`, `/readyz` and
/// `/metrics` (`health.rs`); each request bounded
/// in time and in number (`server`).
pub fn router(state: Arc<ApiState>) -> Router {
    let request_timeout = state.limits.request_timeout;
    let max_in_flight = state.limits.max_in_flight;
    Router::new()
        .route(
            "/",
            post(ecs).fallback(|| async {
                error_response(&ApiError::MethodNotAllowed(
                    "ECS API requests are POST / with an X-Amz-Target header".into(),
                ))
            }),
        )
        .route("/health", get(|| async { "ok" }))
        .route("/livez", get(health::livez))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(health::metrics))
        .route("/cluster/status", get(admin::status))
        .route("/cluster/add-node", post(admin::add_node))
        .route("/cluster/remove-node", post(admin::remove_node))
        .route("/cluster/snapshot", get(admin::snapshot))
        .route("/cluster/keys", get(admin::list_keys))
        .route("/cluster/keys/create", post(admin::create_key))
        .route("/cluster/keys/revoke", post(admin::revoke_key))
        .fallback(|| async { error_response(&ApiError::UnknownPath("No such path".into())) })
        .layer(axum::middleware::from_fn_with_state(request_timeout, server::deadline))
        .layer(axum::middleware::from_fn_with_state(
            Arc::new(tokio::sync::Semaphore::new(max_in_flight)),
            server::throttle,
        ))
        .with_state(state)
}

/// An error answered outside an action, in the same AWS JSON shape.
fn error_response(e: &ApiError) -> Response {
    let body = e.body();
    let mut response = (e.status(), body.to_string()).into_response();
    let h = response.headers_mut();
    h.insert("content-type", HeaderValue::from_static(CONTENT_TYPE));
    if let Ok(v) = HeaderValue::from_str(&stamp::fresh_id()) {
        h.insert("x-amzn-requestid", v);
    }
    response
}

async fn ecs(State(state): State<Arc<ApiState>>, request: axum::extract::Request) -> Response {
    let (parts, body) = request.into_parts();
    let peer = parts
        .extensions
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .copied();
    let (method, uri, headers) = (parts.method, parts.uri, parts.headers);
    // Every client request gets an id of its own; only a forward from a peer carries one.
    let request_id = stamp::fresh_id();
    let started = std::time::Instant::now();
    let request = Incoming {
        method: &method,
        uri: &uri,
        headers: &headers,
    };
    let (action, caller, result) = serve(&state, request, body, &request_id).await;
    let outcome = match &result {
        Ok(_) => "ok".to_string(),
        Err(e) => e.ecs_type().to_string(),
    };
    if auth::mutates(&action) || caller.is_none() {
        audit(peer.map(|p| p.0), caller.as_ref(), &action, &request_id, &outcome);
    }
    metrics::counter!("ecsd_api_requests_total", "action" => action.clone(), "outcome" => outcome).increment(1);
    metrics::histogram!("ecsd_api_request_seconds", "action" => action.clone()).record(started.elapsed().as_secs_f64());
    let (status, body) = match result {
        Ok(value) => (StatusCode::OK, value),
        Err(e) => {
            if e.status().is_server_error() {
                tracing::warn!(%action, %request_id, error = %e, "request failed");
            }
            (e.status(), e.body())
        }
    };
    let mut response = (status, body.to_string()).into_response();
    let h = response.headers_mut();
    h.insert("content-type", HeaderValue::from_static(CONTENT_TYPE));
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        h.insert("x-amzn-requestid", v);
    }
    response
}

/// What the handler needs of a request besides its body.
#[derive(Clone, Copy)]
struct Incoming<'a> {
    method: &'a axum::http::Method,
    uri: &'a axum::http::Uri,
    headers: &'a HeaderMap,
}

/// The audit line of a request: who (the key's name and principal, or none when the signature
/// did not verify), from where, what, its id and how it ended.
pub(crate) fn audit(
    source: Option<std::net::SocketAddr>,
    caller: Option<&Caller>,
    action: &str,
    request_id: &str,
    outcome: &str,
) {
    if !tracing::enabled!(target: "ecsd::audit", tracing::Level::INFO) {
        return;
    }
    let source = source.map(|s| s.to_string()).unwrap_or_default();
    let (key, principal) = caller.map_or(("-", "-"), |c| (c.name.as_str(), c.principal_arn.as_str()));
    tracing::info!(target: "ecsd::audit", key, principal, source, action, request_id, outcome, "audit");
}

/// Reads, authenticates and runs one ECS request: its action, its caller (`None` when the
/// signature did not verify) and its result.
async fn serve(
    state: &ApiState,
    incoming: Incoming<'_>,
    body: Body,
    request_id: &str,
) -> (String, Option<Caller>, Result<Value, ApiError>) {
    let headers = incoming.headers;
    let target = headers.get("x-amz-target").map(|t| t.to_str().unwrap_or_default());
    let action = match target.and_then(|t| t.strip_prefix(TARGET_PREFIX)) {
        Some(a) if ACTIONS.contains(&a) => a.to_string(),
        _ => "-".to_string(),
    };
    // The body is read first, whatever the answer: one left unread would make the server close
    // the connection, and a client's next request on it would fail.
    let within = state.limits.body_timeout;
    let bytes = match tokio::time::timeout(within, read_body(body, state.max_body_bytes)).await {
        Ok(Ok(b)) => b,
        Ok(Err(BodyError::TooLarge)) => {
            let msg = format!("Request body exceeds the limit of {} bytes", state.max_body_bytes);
            return (action, None, Err(ApiError::RequestTooLarge(msg)));
        }
        Ok(Err(BodyError::Broken(e))) => {
            let msg = format!("The request body could not be read: {e}");
            return (action, None, Err(ApiError::Serialization(msg)));
        }
        Err(_) => {
            let msg = format!("The request body was not received within {} ms", within.as_millis());
            return (action, None, Err(ApiError::RequestTimeout(msg)));
        }
    };
    let caller = match authenticate(state, incoming, &bytes).await {
        Ok(caller) => caller,
        Err(e) => return (action, None, Err(e)),
    };
    let Some(target) = target else {
        let e = ApiError::MissingAction("Missing X-Amz-Target header".into());
        return (action, Some(caller), Err(e));
    };
    if action == "-" {
        let msg = format!("Unknown operation {}", crate::model::clip(target));
        return (action, Some(caller), Err(ApiError::InvalidAction(msg)));
    }
    if !auth::allows(caller.role, &action) {
        let e = auth::denied(&caller, &format!("ecs:{action}"));
        return (action, Some(caller), Err(e));
    }
    let consistency = match headers.get(CONSISTENCY_HEADER).and_then(|v| v.to_str().ok()) {
        Some(v) if v.eq_ignore_ascii_case("stale") => Consistency::Stale,
        _ => Consistency::Linearizable,
    };
    let result = handle(state, &action, &bytes, request_id, consistency, false, &caller).await;
    (action, Some(caller), result)
}

/// The caller of a request, its signature verified against this node's replica of the keys.
async fn authenticate(state: &ApiState, incoming: Incoming<'_>, body: &Bytes) -> Result<Caller, ApiError> {
    let handle = state.node.handle();
    let verify = || {
        state.auth.verify(
            handle.view(),
            incoming.method,
            incoming.uri,
            incoming.headers,
            body.clone(),
        )
    };
    match verify().await {
        // A key made a moment ago on another node: once this replica has caught up (a read
        // barrier, bounded by the hold), verify again.
        Err(ApiError::UnrecognizedClient(_)) if handle.read_barrier().await.is_ok() => verify().await,
        verified => verified,
    }
}

enum BodyError {
    TooLarge,
    Broken(axum::Error),
}

/// The request body, unless it is longer than `limit`. The rest of a body over the limit is
/// read and dropped (up to 16 times the limit, within the body timeout), so that a client still
/// sending gets the 413 answer instead of a broken connection, and the connection stays usable.
async fn read_body(body: Body, limit: usize) -> Result<Bytes, BodyError> {
    use futures::StreamExt;
    let mut stream = body.into_data_stream();
    // A body that arrives in one chunk (most do) is kept as it came, without a copy.
    let mut chunks: Vec<Bytes> = Vec::new();
    let mut received = 0usize;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(BodyError::Broken)?;
        received = received.saturating_add(chunk.len());
        if received <= limit {
            chunks.push(chunk);
        } else if received > limit.saturating_mul(16) {
            return Err(BodyError::TooLarge);
        }
    }
    if received > limit {
        return Err(BodyError::TooLarge);
    }
    Ok(match chunks.len() {
        0 | 1 => chunks.pop().unwrap_or_default(),
        _ => Bytes::from(chunks.concat()),
    })
}

/// Runs one request whose action, body and caller are known.
async fn handle(
    state: &ApiState,
    action: &str,
    bytes: &[u8],
    request_id: &str,
    consistency: Consistency,
    forwarded: bool,
    caller: &Caller,
) -> Result<Value, ApiError> {
    let body_digest = crate::model::stable_hash(bytes);
    let ctx = Ctx {
        state,
        request_id,
        consistency,
        body_digest,
        // The action and the body's digest: no second pass over (or copy of) the body.
        request_digest: crate::model::stable_hash(&[action.as_bytes(), b"\n", &body_digest.to_le_bytes()].concat()),
        body: bytes,
        forwarded,
        caller,
    };
    let body: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
        bytes
    };
    dispatch(&ctx, action, body).await
}

/// How this node serves the requests other nodes forward to it as leader: under the id they
/// got where they arrived, never forwarded again, bounded by this node's request timeout.
///
/// The handler holds the API state weakly: the Raft handle keeps the handler, and the state
/// keeps the Raft handle, so a strong reference would keep a stopped node (its database) alive.
pub fn request_handler(state: &Arc<ApiState>) -> RequestHandler {
    let state = Arc::downgrade(state);
    Arc::new(move |request: ForwardedRequest, body: Vec<u8>| {
        let state = state.upgrade();
        Box::pin(async move {
            let Some(state) = state else {
                return forwarded_reply(Err(ApiError::Unavailable("the node is shutting down".into())));
            };
            let result = match admit_forwarded(&state, &request, &body) {
                Err(e) => Err(e),
                Ok(caller) => {
                    let request_id = match stamp::is_id(&request.request_id) {
                        true => request.request_id,
                        false => stamp::fresh_id(),
                    };
                    let within = state.limits.request_timeout;
                    let run = handle(
                        &state,
                        &request.action,
                        &body,
                        &request_id,
                        Consistency::Linearizable,
                        true,
                        &caller,
                    );
                    match tokio::time::timeout(within, run).await {
                        Ok(result) => result,
                        Err(_) => Err(ApiError::Server(format!(
                            "the request was not answered within {} ms",
                            within.as_millis()
                        ))),
                    }
                }
            };
            forwarded_reply(result)
        })
    })
}

/// Who a forwarded request runs as, once admitted: a known action; the caller the forwarding
/// node verified (the node-to-node port admits only members), or, from an earlier version that
/// sends none, the anonymous caller a cluster without authentication serves; a role that allows
/// the action; a body within the limit.
fn admit_forwarded(state: &ApiState, request: &ForwardedRequest, body: &[u8]) -> Result<Caller, ApiError> {
    if !ACTIONS.contains(&request.action.as_str()) {
        return Err(ApiError::InvalidAction(format!("Unknown operation {}", request.action)));
    }
    let caller = match &request.caller {
        Some(caller) => caller.clone(),
        None if !state.auth.enabled() => state.auth.anonymous().clone(),
        None => {
            return Err(ApiError::MissingAuthenticationToken(
                "Request is missing Authentication Token (a forward without its caller)".into(),
            ))
        }
    };
    if !auth::allows(caller.role, &request.action) {
        return Err(auth::denied(&caller, &format!("ecs:{}", request.action)));
    }
    if body.len() > state.max_body_bytes {
        let msg = format!("Request body exceeds the limit of {} bytes", state.max_body_bytes);
        return Err(ApiError::RequestTooLarge(msg));
    }
    Ok(caller)
}

/// A forwarded request's answer, as the node it came through relays it.
fn forwarded_reply(result: Result<Value, ApiError>) -> ForwardedReply {
    match result {
        Ok(body) => ForwardedReply { status: 200, body },
        Err(e) => ForwardedReply {
            status: e.status().as_u16(),
            body: e.body(),
        },
    }
}

async fn dispatch(ctx: &Ctx<'_>, action: &str, body: &[u8]) -> Result<Value, ApiError> {
    match action {
        "CreateCluster" => clusters::create_cluster(ctx, parse(body)?).await,
        "DescribeClusters" => clusters::describe_clusters(ctx, parse(body)?).await,
        "ListClusters" => clusters::list_clusters(ctx, parse(body)?).await,
        "DeleteCluster" => clusters::delete_cluster(ctx, parse(body)?).await,
        "UpdateCluster" => clusters::update_cluster(ctx, parse(body)?).await,
        "UpdateClusterSettings" => clusters::update_cluster_settings(ctx, parse(body)?).await,
        "PutClusterCapacityProviders" => clusters::put_cluster_capacity_providers(ctx, parse(body)?).await,
        "RegisterTaskDefinition" => task_definitions::register_task_definition(ctx, parse(body)?).await,
        "DeregisterTaskDefinition" => task_definitions::deregister_task_definition(ctx, parse(body)?).await,
        "DescribeTaskDefinition" => task_definitions::describe_task_definition(ctx, parse(body)?).await,
        "ListTaskDefinitions" => task_definitions::list_task_definitions(ctx, parse(body)?).await,
        "ListTaskDefinitionFamilies" => task_definitions::list_task_definition_families(ctx, parse(body)?).await,
        "PutAccountSetting" => account_settings::put_account_setting(ctx, parse(body)?).await,
        "PutAccountSettingDefault" => account_settings::put_account_setting_default(ctx, parse(body)?).await,
        "DeleteAccountSetting" => account_settings::delete_account_setting(ctx, parse(body)?).await,
        "ListAccountSettings" => account_settings::list_account_settings(ctx, parse(body)?).await,
        "TagResource" => tags::tag_resource(ctx, parse(body)?).await,
        "UntagResource" => tags::untag_resource(ctx, parse(body)?).await,
        "ListTagsForResource" => tags::list_tags_for_resource(ctx, parse(body)?).await,
        "RegisterContainerInstance" => container_instances::register_container_instance(ctx, parse(body)?).await,
        "DeregisterContainerInstance" => container_instances::deregister_container_instance(ctx, parse(body)?).await,
        "DescribeContainerInstances" => container_instances::describe_container_instances(ctx, parse(body)?).await,
        "ListContainerInstances" => container_instances::list_container_instances(ctx, parse(body)?).await,
        "UpdateContainerInstancesState" => {
            container_instances::update_container_instances_state(ctx, parse(body)?).await
        }
        "UpdateContainerAgent" => container_instances::update_container_agent(ctx, parse(body)?).await,
        "DiscoverPollEndpoint" => container_instances::discover_poll_endpoint(ctx, parse(body)?).await,
        "PutAttributes" => attributes::put_attributes(ctx, parse(body)?).await,
        "DeleteAttributes" => attributes::delete_attributes(ctx, parse(body)?).await,
        "ListAttributes" => attributes::list_attributes(ctx, parse(body)?).await,
        "RunTask" => tasks::run_task(ctx, parse(body)?).await,
        "StartTask" => tasks::start_task(ctx, parse(body)?).await,
        "StopTask" => tasks::stop_task(ctx, parse(body)?).await,
        "DescribeTasks" => tasks::describe_tasks(ctx, parse(body)?).await,
        "ListTasks" => tasks::list_tasks(ctx, parse(body)?).await,
        "SubmitTaskStateChange" => tasks::submit_task_state_change(ctx, parse(body)?).await,
        "SubmitContainerStateChange" => tasks::submit_container_state_change(ctx, parse(body)?).await,
        "CreateService" => services::create_service(ctx, parse(body)?).await,
        "UpdateService" => services::update_service(ctx, parse(body)?).await,
        "DeleteService" => services::delete_service(ctx, parse(body)?).await,
        "DescribeServices" => services::describe_services(ctx, parse(body)?).await,
        "ListServices" => services::list_services(ctx, parse(body)?).await,
        "ListServicesByNamespace" => services::list_services_by_namespace(ctx, parse(body)?).await,
        "DeleteTaskDefinitions" => task_definitions::delete_task_definitions(ctx, parse(body)?).await,
        "UpdateTaskProtection" => tasks::update_task_protection(ctx, parse(body)?).await,
        "GetTaskProtection" => tasks::get_task_protection(ctx, parse(body)?).await,
        "CreateCapacityProvider" => clusters::create_capacity_provider(ctx, parse(body)?).await,
        "DescribeCapacityProviders" => clusters::describe_capacity_providers(ctx, parse(body)?).await,
        // `ecs` admits only ACTIONS, so this answers only an action listed without a handler.
        other => Err(ApiError::Unsupported(format!(
            "{other} is not supported by this ecsd version"
        ))),
    }
}

/// Parses a request body, naming the field at fault on a type error. Unknown fields are ignored.
/// The body must be a JSON object (serde would otherwise read an array as positional fields).
fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(ApiError::Serialization("Request body must be a JSON object".into()));
    }
    let mut de = serde_json::Deserializer::from_slice(body);
    let value: T = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if inner.is_syntax() || inner.is_eof() {
            ApiError::Serialization(format!("Malformed JSON request body: {inner}"))
        } else if path == "." {
            ApiError::Serialization(format!("Request body must be a JSON object: {inner}"))
        } else {
            ApiError::Serialization(format!("{path}: {inner}"))
        }
    })?;
    de.end()
        .map_err(|e| ApiError::Serialization(format!("Malformed JSON request body: {e}")))?;
    Ok(value)
}

/// Serialises a response body.
fn to_value<T: serde::Serialize>(value: &T) -> Result<Value, ApiError> {
    serde_json::to_value(value).map_err(|e| ApiError::Server(format!("encode response: {e}")))
}
