//! Cluster administration over HTTP (used by `ecsd cluster` and `ecsd keys`): status,
//! add-node, remove-node, and the access keys. Each request is signed like an ECS request;
//! status needs any role but `agent`, everything else the `admin` role. Every change is audited.

use std::sync::Arc;

use axum::extract::ConnectInfo;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{audit, ApiError, ApiState, Incoming};
use crate::model::{AccessKey, Caller, Role};
use crate::raft::{AdminOp, NodeError, NodeInfo};
use crate::state::{Command, Outcome};

/// Body of `POST /cluster/add-node`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddNodeRequest {
    pub id: u64,
    pub api_addr: String,
    pub raft_addr: String,
}

/// Body of `POST /cluster/remove-node`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemoveNodeRequest {
    pub id: u64,
}

/// Body of `POST /cluster/keys/create`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateKeyRequest {
    pub name: String,
    pub role: String,
}

/// Body of `POST /cluster/keys/revoke`: a key's name or access key id.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RevokeKeyRequest {
    pub name: String,
}

pub(super) type Reply = (StatusCode, Json<Value>);

fn error_reply(e: NodeError) -> Reply {
    (super::error::admin_status(&e), Json(json!({ "error": e.to_string() })))
}

fn api_error_reply(e: &ApiError) -> Reply {
    (e.status(), Json(e.body()))
}

/// One admin request: its caller, verified and allowed `what`, and its body parsed.
pub(super) struct Admin<T> {
    caller: Caller,
    body: T,
}

/// The parts of an admin request.
pub struct Request {
    state: Arc<ApiState>,
    peer: Option<ConnectInfo<std::net::SocketAddr>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    /// The body, or `None` when it was over the limit or could not be read.
    body: Option<axum::body::Bytes>,
    /// The identity of the client certificate the connection presented, if any.
    client: Option<crate::tls::Identity>,
}

impl<S: Send + Sync> axum::extract::FromRequest<S> for Request
where
    Arc<ApiState>: axum::extract::FromRef<S>,
{
    type Rejection = std::convert::Infallible;

    async fn from_request(request: axum::extract::Request, state: &S) -> Result<Self, Self::Rejection> {
        let (parts, body) = request.into_parts();
        let peer = parts.extensions.get::<ConnectInfo<std::net::SocketAddr>>().cloned();
        let client = parts
            .extensions
            .get::<super::server::ClientCertificate>()
            .map(|c| c.0.clone());
        let state: Arc<ApiState> = axum::extract::FromRef::from_ref(state);
        let limit = state.max_body_bytes;
        let within = state.limits.body_timeout;
        let body = tokio::time::timeout(within, super::read_body(body, limit))
            .await
            .ok()
            .and_then(Result::ok);
        Ok(Request {
            state,
            peer,
            method: parts.method,
            uri: parts.uri,
            headers: parts.headers,
            body,
            client,
        })
    }
}

impl Request {
    pub(super) fn state(&self) -> &Arc<ApiState> {
        &self.state
    }

    /// Whether the connection presented the certificate of an operator's tool or of a member
    /// (`ecsd tls cert --client NAME`, as Prometheus presents for `/metrics`): verified by the
    /// TLS handshake against the cluster's CA, it stands in for a signature on reads of the
    /// node's own figures. Agents' certificates do not.
    pub(super) fn has_operator_certificate(&self) -> bool {
        matches!(
            self.client,
            Some(crate::tls::Identity::Client(_) | crate::tls::Identity::Node(_))
        )
    }

    /// Verifies the signature, checks that the caller's role is one of `roles`, and parses the body.
    pub(super) async fn admit<T: serde::de::DeserializeOwned>(
        &self,
        what: &str,
        roles: &[Role],
    ) -> Result<Admin<T>, Reply> {
        let incoming = Incoming {
            method: &self.method,
            uri: &self.uri,
            headers: &self.headers,
        };
        let Some(bytes) = &self.body else {
            let e = ApiError::RequestTooLarge(format!(
                "the request body exceeds {} bytes or did not arrive in time",
                self.state.max_body_bytes
            ));
            self.audit(None, what, e.ecs_type());
            return Err(api_error_reply(&e));
        };
        let caller = match super::authenticate(&self.state, incoming, bytes).await {
            Ok(caller) => caller,
            Err(e) => {
                self.audit(None, what, e.ecs_type());
                return Err(api_error_reply(&e));
            }
        };
        if !roles.contains(&caller.role) {
            let e = super::auth::denied(&caller, &format!("ecsd:{what}"));
            self.audit(Some(&caller), what, e.ecs_type());
            return Err(api_error_reply(&e));
        }
        let text: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) {
            b"null"
        } else {
            bytes
        };
        let body = serde_json::from_slice(text).map_err(|e| {
            let e = ApiError::Serialization(format!("the request body: {e}"));
            (e.status(), Json(json!({ "error": e.to_string() })))
        })?;
        Ok(Admin { caller, body })
    }

    fn audit(&self, caller: Option<&Caller>, action: &str, outcome: &str) {
        audit(
            self.peer.map(|p| p.0),
            caller,
            action,
            &crate::stamp::fresh_id(),
            outcome,
        );
    }
}

pub(super) const ANY_BUT_AGENT: [Role; 3] = [Role::Admin, Role::Operator, Role::ReadOnly];
const ADMIN: [Role; 1] = [Role::Admin];

pub async fn status(request: Request) -> Reply {
    if let Err(reply) = request.admit::<Option<Value>>("ClusterStatus", &ANY_BUT_AGENT).await {
        return reply;
    }
    let status = request.state.node.handle().cluster_status().await;
    match serde_json::to_value(status) {
        Ok(v) => (StatusCode::OK, Json(v)),
        Err(e) => error_reply(NodeError::Internal(e.to_string())),
    }
}

pub async fn add_node(request: Request) -> Reply {
    let admin = match request.admit::<AddNodeRequest>("AddNode", &ADMIN).await {
        Ok(admin) => admin,
        Err(reply) => return reply,
    };
    let id = admin.body.id;
    let op = AdminOp::AddNode {
        id,
        info: NodeInfo {
            rpc_addr: admin.body.raft_addr,
            api_addr: admin.body.api_addr,
        },
    };
    let result = request.state.node.handle().admin(op).await;
    request.audit(Some(&admin.caller), &format!("AddNode({id})"), outcome(&result));
    match result {
        Ok(()) => (StatusCode::OK, Json(json!({ "added": id }))),
        Err(e) => error_reply(e),
    }
}

pub async fn remove_node(request: Request) -> Reply {
    let admin = match request.admit::<RemoveNodeRequest>("RemoveNode", &ADMIN).await {
        Ok(admin) => admin,
        Err(reply) => return reply,
    };
    let id = admin.body.id;
    let result = request.state.node.handle().admin(AdminOp::RemoveNode { id }).await;
    request.audit(Some(&admin.caller), &format!("RemoveNode({id})"), outcome(&result));
    match result {
        Ok(()) => (StatusCode::OK, Json(json!({ "removed": id }))),
        Err(e) => error_reply(e),
    }
}

/// `GET /cluster/snapshot`: a backup of the whole state (`raft/backup.rs`), streamed with its
/// index, term and SHA-256 in headers. Admin only: it holds every access key.
pub async fn snapshot(request: Request) -> axum::response::Response {
    use axum::response::IntoResponse;
    let admin = match request.admit::<Option<Value>>("SnapshotSave", &ADMIN).await {
        Ok(admin) => admin,
        Err(reply) => return reply.into_response(),
    };
    let result = request.state.node.handle().backup().await;
    request.audit(Some(&admin.caller), "SnapshotSave", outcome(&result));
    let saved = match result {
        Ok(saved) => saved,
        Err(e) => return error_reply(e).into_response(),
    };
    // Already unlinked: nothing is left on disk however the stream ends.
    let file = tokio::fs::File::from_std(saved.file);
    let log_id = saved.meta.last_log_id;
    let headers = [
        (axum::http::header::CONTENT_TYPE, "application/octet-stream".to_string()),
        (axum::http::header::CONTENT_LENGTH, saved.bytes.to_string()),
        (
            axum::http::HeaderName::from_static(BACKUP_INDEX_HEADER),
            log_id.map_or(0, |l| l.index).to_string(),
        ),
        (
            axum::http::HeaderName::from_static(BACKUP_TERM_HEADER),
            log_id.map_or(0, |l| l.leader_id.term).to_string(),
        ),
        (axum::http::HeaderName::from_static(BACKUP_SHA256_HEADER), saved.sha256),
    ];
    let body = axum::body::Body::from_stream(tokio_util::io::ReaderStream::new(file));
    (StatusCode::OK, headers, body).into_response()
}

/// The headers of a backup's answer: its log index and term, and its SHA-256 (hex), which is
/// also the file's footer.
pub const BACKUP_INDEX_HEADER: &str = "x-ecsd-snapshot-index";
pub const BACKUP_TERM_HEADER: &str = "x-ecsd-snapshot-term";
pub const BACKUP_SHA256_HEADER: &str = "x-ecsd-snapshot-sha256";

fn outcome<T>(result: &Result<T, NodeError>) -> &'static str {
    match result {
        Ok(_) => "ok",
        Err(NodeError::Rejected(_)) => "rejected",
        Err(NodeError::Unavailable(_)) => "unavailable",
        Err(NodeError::Internal(_)) => "failed",
    }
}

/// A key as listed: everything but its secret.
fn listed(key: &AccessKey) -> Value {
    json!({
        "name": key.name,
        "accessKeyId": key.access_key_id,
        "role": key.role.as_str(),
        "principalArn": key.principal_arn,
        "createdAt": key.created_ms as f64 / 1000.0,
    })
}

/// Proposes `command` for an admin request, as the ECS actions propose theirs; a rejection is
/// its ECS error.
async fn propose(state: &ApiState, command: Command) -> Result<(), ApiError> {
    match state.node.write(crate::stamp::proposal(command)).await? {
        Outcome::Rejected(r) => Err(r.into()),
        _ => Ok(()),
    }
}

/// A result as the audit line names it.
fn audited<T>(result: &Result<T, ApiError>) -> &str {
    result.as_ref().map_or_else(ApiError::ecs_type, |_| "ok")
}

pub async fn create_key(request: Request) -> Reply {
    let admin = match request.admit::<CreateKeyRequest>("CreateAccessKey", &ADMIN).await {
        Ok(admin) => admin,
        Err(reply) => return reply,
    };
    let CreateKeyRequest { name, role } = admin.body;
    let what = format!("CreateAccessKey({name})");
    let result = create(&request.state, &name, &role).await;
    request.audit(Some(&admin.caller), &what, audited(&result));
    match result {
        Ok(key) => {
            let mut body = listed(&key);
            body["secretAccessKey"] = json!(key.secret_access_key);
            (StatusCode::OK, Json(body))
        }
        Err(e) => api_error_reply(&e),
    }
}

async fn create(state: &ApiState, name: &str, role: &str) -> Result<AccessKey, ApiError> {
    if !crate::model::valid_key_name(name) || name == "root" || name == "anonymous" {
        return Err(super::invalid(
            "name: must be 1 to 64 letters, digits and +=,.@_- (and not root or anonymous)",
        ));
    }
    let Some(role) = Role::parse(role) else {
        return Err(super::invalid("role: must be one of admin, operator, read-only, agent"));
    };
    let (access_key_id, secret_access_key) = crate::stamp::fresh_access_key();
    let key = AccessKey {
        access_key_id,
        secret_access_key,
        name: name.to_string(),
        role,
        principal_arn: state.scope.user_principal(name),
        created_ms: crate::stamp::now_ms(),
    };
    propose(state, Command::CreateAccessKey(Box::new(key.clone()))).await?;
    Ok(key)
}

pub async fn revoke_key(request: Request) -> Reply {
    let admin = match request.admit::<RevokeKeyRequest>("RevokeAccessKey", &ADMIN).await {
        Ok(admin) => admin,
        Err(reply) => return reply,
    };
    let name = admin.body.name;
    let result = propose(&request.state, Command::RevokeAccessKey { name: name.clone() }).await;
    request.audit(
        Some(&admin.caller),
        &format!("RevokeAccessKey({name})"),
        audited(&result),
    );
    match result {
        Ok(()) => (StatusCode::OK, Json(json!({ "revoked": name }))),
        Err(e) => api_error_reply(&e),
    }
}

pub async fn list_keys(request: Request) -> Reply {
    if let Err(reply) = request.admit::<Option<Value>>("ListAccessKeys", &ADMIN).await {
        return reply;
    }
    let state = &request.state;
    let keys = async {
        state.node.handle().read_barrier().await?;
        Ok::<_, ApiError>(crate::state::keys::list(state.node.handle().view())?)
    };
    match keys.await {
        Ok(keys) => (
            StatusCode::OK,
            Json(json!({ "keys": keys.iter().map(listed).collect::<Vec<_>>() })),
        ),
        Err(e) => api_error_reply(&e),
    }
}
