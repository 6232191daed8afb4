//! Who is calling: SigV4 verification of every request (scratchstack-aws-signature does the
//! canonicalisation and the constant-time comparison), the caller's access key, and what its
//! role may do. Keys live in the replicated state (`state::keys`), read from this node's
//! replica; the bootstrap root key comes from the config.

use std::str::FromStr;
use std::sync::{Arc, Mutex};

use axum::http::{HeaderMap, Method, Uri};
use scratchstack_aws_signature::{
    service_for_signing_key_fn, sigv4_validate_request, GetSigningKeyRequest, GetSigningKeyResponse, KSecretKey,
    SignatureError, SignatureOptions, NO_ADDITIONAL_SIGNED_HEADERS,
};

use super::ApiError;
use crate::config::AuthConfig;
use crate::model::{AccessKey, ArnScope, Caller, Role};
use crate::raft::state_machine::StateView;
// The service named in every credential scope: the signer's.
use ecsd_protocol::sigv4::SERVICE;

/// What a node knows to authenticate requests.
pub struct Authenticator {
    enabled: bool,
    root: Option<Arc<AccessKey>>,
    region: String,
    anonymous: Caller,
}

/// The actions an `agent` key may call over HTTP (those of ECS's managed policy for container
/// instances); the agent protocol on the node-to-node port is theirs too.
pub const AGENT_ACTIONS: [&str; 6] = [
    "CreateCluster",
    "DeregisterContainerInstance",
    "DiscoverPollEndpoint",
    "RegisterContainerInstance",
    "SubmitContainerStateChange",
    "SubmitTaskStateChange",
];

/// Whether `role` may call the ECS action `action`.
pub fn allows(role: Role, action: &str) -> bool {
    match role {
        Role::Admin | Role::Operator => true,
        Role::ReadOnly => reads(action),
        Role::Agent => AGENT_ACTIONS.contains(&action),
    }
}

/// Whether an action only reads (Describe*, List*, Get*).
fn reads(action: &str) -> bool {
    action.starts_with("Describe") || action.starts_with("List") || action.starts_with("Get")
}

/// Whether an action changes state (what the audit log records).
pub fn mutates(action: &str) -> bool {
    !(reads(action) || action == "DiscoverPollEndpoint")
}

/// The answer to a caller whose role does not allow `what`.
pub fn denied(caller: &Caller, what: &str) -> ApiError {
    ApiError::AccessDenied(format!(
        "User: {} is not authorized to perform: {what} on resource: * (access key {} has the {} role)",
        caller.principal_arn,
        caller.name,
        caller.role.as_str()
    ))
}

impl Authenticator {
    pub fn new(config: &AuthConfig, scope: &ArnScope) -> Authenticator {
        let root = match (&config.root_access_key_id, &config.root_secret_access_key) {
            (Some(id), Some(secret)) => Some(Arc::new(AccessKey {
                access_key_id: id.clone(),
                secret_access_key: secret.clone(),
                name: "root".into(),
                role: Role::Admin,
                principal_arn: scope.root_principal(),
                created_ms: 0,
            })),
            _ => None,
        };
        Authenticator {
            enabled: config.enabled,
            root,
            region: scope.region.clone(),
            anonymous: Caller {
                name: "anonymous".into(),
                access_key_id: String::new(),
                role: Role::Admin,
                principal_arn: scope.root_principal(),
            },
        }
    }

    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// The caller of every request while authentication is off: the root user, as admin.
    pub fn anonymous(&self) -> &Caller {
        &self.anonymous
    }

    /// The caller of a request, after its signature is verified against the keys of `view`.
    /// With authentication off every request is the root user's, with the admin role.
    pub async fn verify(
        &self,
        view: &StateView,
        method: &Method,
        uri: &Uri,
        headers: &HeaderMap,
        body: axum::body::Bytes,
    ) -> Result<Caller, ApiError> {
        if !self.enabled {
            return Ok(self.anonymous.clone());
        }
        let mut request = axum::http::Request::new(body);
        *request.method_mut() = method.clone();
        *request.uri_mut() = uri.clone();
        *request.headers_mut() = headers.clone();
        let found: Arc<Mutex<Option<AccessKey>>> = Arc::default();
        let lookup = {
            let found = found.clone();
            let root = self.root.clone();
            let view = view.clone();
            move |req: GetSigningKeyRequest| {
                let found = found.clone();
                let key = match &root {
                    Some(root) if root.access_key_id == req.access_key() => Ok(Some(AccessKey::clone(root))),
                    _ => crate::state::keys::get(&view, req.access_key()),
                };
                async move {
                    let key = key.map_err(|e| SignatureError::InternalServiceError(e.to_string().into()))?;
                    let Some(key) = key else {
                        return Err(SignatureError::InvalidClientTokenId(
                            "The security token included in the request is invalid.".into(),
                        )
                        .into());
                    };
                    let secret = KSecretKey::from_str(&key.secret_access_key)
                        .map_err(|_| SignatureError::InternalServiceError("a stored secret is malformed".into()))?;
                    let signing = secret.to_ksigning(req.request_date(), req.region(), req.service());
                    if let Ok(mut slot) = found.lock() {
                        *slot = Some(key);
                    }
                    Ok(GetSigningKeyResponse::builder().signing_key(signing).build()?)
                }
            }
        };
        let mut service = service_for_signing_key_fn(lookup);
        sigv4_validate_request(
            request,
            &self.region,
            SERVICE,
            &mut service,
            chrono::Utc::now(),
            &NO_ADDITIONAL_SIGNED_HEADERS,
            SignatureOptions::default(),
        )
        .await
        .map_err(|e| signature_error(SignatureError::from(e)))?;
        let key = found.lock().ok().and_then(|mut slot| slot.take());
        let key = key.ok_or_else(|| ApiError::Server("a verified request has no key".into()))?;
        Ok(Caller {
            name: key.name,
            access_key_id: key.access_key_id,
            role: key.role,
            principal_arn: key.principal_arn,
        })
    }
}

/// A verification failure as the AWS JSON protocol answers it (`__type` and message).
fn signature_error(e: SignatureError) -> ApiError {
    let message = e.to_string();
    match e {
        SignatureError::MissingAuthenticationToken(_) => ApiError::MissingAuthenticationToken(message),
        SignatureError::InvalidClientTokenId(_) => ApiError::UnrecognizedClient(message),
        SignatureError::SignatureDoesNotMatch(_) => ApiError::InvalidSignature(if message.is_empty() {
            "The request signature we calculated does not match the signature you provided. Check your AWS \
             Secret Access Key and signing method. Consult the service documentation for details."
                .into()
        } else {
            message
        }),
        SignatureError::ExpiredToken(_) => ApiError::ExpiredToken(message),
        SignatureError::IO(_) | SignatureError::InternalServiceError(_) => ApiError::Server(message),
        _ => ApiError::IncompleteSignature(message),
    }
}

/// With an `agent` caller, that the instance is bound to it (other roles pass).
pub async fn agent_owns_instance(ctx: &super::Ctx<'_>, cluster: &str, instance: &str) -> Result<(), ApiError> {
    if ctx.caller.role != Role::Agent {
        return Ok(());
    }
    let view = ctx.read_view().await?;
    match crate::state::container_instances::bound_to(view, cluster, instance, &ctx.caller.name)? {
        true => Ok(()),
        false => Err(ApiError::AccessDenied(format!(
            "containerInstance: agent {} may report only for the container instances it registered",
            ctx.caller.name
        ))),
    }
}

/// With an `agent` caller, that the task runs on an instance bound to it (other roles pass).
pub async fn agent_owns_task(ctx: &super::Ctx<'_>, cluster: &str, task: &str) -> Result<(), ApiError> {
    if ctx.caller.role != Role::Agent {
        return Ok(());
    }
    let view = ctx.read_view().await?;
    match crate::state::container_instances::task_bound_to(view, cluster, task, &ctx.caller.name)? {
        true => Ok(()),
        false => Err(ApiError::AccessDenied(format!(
            "task: agent {} may report only for tasks on the container instances it registered",
            ctx.caller.name
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_allow_what_the_issue_of_keys_promises() {
        for action in super::super::ACTIONS {
            assert!(allows(Role::Admin, action) && allows(Role::Operator, action));
        }
        assert!(allows(Role::ReadOnly, "DescribeClusters") && allows(Role::ReadOnly, "ListTasks"));
        assert!(!allows(Role::ReadOnly, "CreateCluster") && !allows(Role::ReadOnly, "DiscoverPollEndpoint"));
        assert!(allows(Role::Agent, "SubmitTaskStateChange") && allows(Role::Agent, "RegisterContainerInstance"));
        assert!(!allows(Role::Agent, "StopTask") && !allows(Role::Agent, "DescribeTaskDefinition"));
    }
}
