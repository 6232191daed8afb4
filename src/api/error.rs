//! Errors on the wire: the one place that maps failures to an ECS `__type` and an HTTP status
//! (and, for the `/cluster/*` admin endpoints, to their status).

use axum::http::StatusCode;

use crate::raft::NodeError;
use crate::state::Rejection;

/// An error answered to an ECS API client.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    Client(String),
    #[error("{0}")]
    InvalidParameter(String),
    #[error("{0}")]
    ClusterNotFound(String),
    #[error("{0}")]
    ResourceNotFound(String),
    #[error("{0}")]
    TargetNotFound(String),
    #[error("{0}")]
    MissingVersion(String),
    #[error("{0}")]
    NoUpdateAvailable(String),
    #[error("{0}")]
    UpdateInProgress(String),
    #[error("{0}")]
    AttributeLimitExceeded(String),
    #[error("{0}")]
    ClusterContainsContainerInstances(String),
    #[error("{0}")]
    ClusterContainsServices(String),
    #[error("{0}")]
    ClusterContainsTasks(String),
    #[error("{0}")]
    ServiceNotFound(String),
    #[error("{0}")]
    ServiceNotActive(String),
    /// The JSON body is malformed or a field has the wrong type.
    #[error("{0}")]
    Serialization(String),
    /// The `X-Amz-Target` action is not one this API has.
    #[error("{0}")]
    InvalidAction(String),
    /// No `X-Amz-Target` header.
    #[error("{0}")]
    MissingAction(String),
    /// An HTTP method other than POST on the ECS endpoint.
    #[error("{0}")]
    MethodNotAllowed(String),
    /// A path that serves nothing.
    #[error("{0}")]
    UnknownPath(String),
    #[error("{0}")]
    RequestTooLarge(String),
    /// A valid action or value this version does not support.
    #[error("{0}")]
    Unsupported(String),
    /// Over the node's cap on connections or requests in flight; nothing was done.
    #[error("{0}")]
    Throttling(String),
    /// The request's body did not arrive in time.
    #[error("{0}")]
    RequestTimeout(String),
    /// The cluster cannot serve the request right now (no leader); nothing was applied.
    #[error("{0}")]
    Unavailable(String),
    /// An internal failure.
    #[error("{0}")]
    Server(String),
    /// No signature at all (authentication is on).
    #[error("{0}")]
    MissingAuthenticationToken(String),
    /// A signature that cannot be read (a malformed Authorization header or date).
    #[error("{0}")]
    IncompleteSignature(String),
    /// A signature by an access key this cluster does not have.
    #[error("{0}")]
    UnrecognizedClient(String),
    /// A signature that does not match, or was made more than 15 minutes off this node's clock.
    #[error("{0}")]
    InvalidSignature(String),
    #[error("{0}")]
    ExpiredToken(String),
    /// The caller's role does not allow the action.
    #[error("{0}")]
    AccessDenied(String),
    #[error("{0}")]
    ResourceInUse(String),
    #[error("{0}")]
    PlatformUnknown(String),
    /// An error the leader answered to a forwarded request, relayed as it was.
    #[error("{message}")]
    Relayed { status: u16, kind: String, message: String },
}

/// The HTTP status of an admin endpoint's failure.
pub fn admin_status(e: &NodeError) -> StatusCode {
    match e {
        NodeError::Rejected(_) => StatusCode::BAD_REQUEST,
        NodeError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        NodeError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// An `InvalidParameterException`; the message names the field.
pub fn invalid(message: impl Into<String>) -> ApiError {
    ApiError::InvalidParameter(message.into())
}

impl ApiError {
    /// The `ClusterNotFoundException` of a cluster that does not exist, in ECS's words.
    pub fn cluster_not_found() -> ApiError {
        ApiError::ClusterNotFound("Cluster not found.".into())
    }

    /// The AWS JSON error body: `__type` and the message (cut to `model::MAX_MESSAGE_CHARS`).
    pub fn body(&self) -> serde_json::Value {
        serde_json::json!({ "__type": self.ecs_type(), "message": crate::model::clip(&self.to_string()) })
    }

    /// The `__type` of the error body.
    pub fn ecs_type(&self) -> &str {
        match self {
            ApiError::Relayed { kind, .. } => kind,
            ApiError::Client(_) => "ClientException",
            ApiError::InvalidParameter(_) => "InvalidParameterException",
            ApiError::ClusterNotFound(_) => "ClusterNotFoundException",
            ApiError::ResourceNotFound(_) => "ResourceNotFoundException",
            ApiError::TargetNotFound(_) => "TargetNotFoundException",
            ApiError::MissingVersion(_) => "MissingVersionException",
            ApiError::NoUpdateAvailable(_) => "NoUpdateAvailableException",
            ApiError::UpdateInProgress(_) => "UpdateInProgressException",
            ApiError::AttributeLimitExceeded(_) => "AttributeLimitExceededException",
            ApiError::ClusterContainsContainerInstances(_) => "ClusterContainsContainerInstancesException",
            ApiError::ClusterContainsServices(_) => "ClusterContainsServicesException",
            ApiError::ClusterContainsTasks(_) => "ClusterContainsTasksException",
            ApiError::ServiceNotFound(_) => "ServiceNotFoundException",
            ApiError::ServiceNotActive(_) => "ServiceNotActiveException",
            ApiError::Serialization(_) => "SerializationException",
            ApiError::InvalidAction(_) => "InvalidAction",
            ApiError::MissingAction(_) => "MissingAction",
            ApiError::MethodNotAllowed(_) => "InvalidAction",
            ApiError::UnknownPath(_) => "UnknownOperationException",
            ApiError::RequestTooLarge(_) => "RequestEntityTooLargeException",
            ApiError::Unsupported(_) => "UnsupportedFeatureException",
            ApiError::Throttling(_) => "ThrottlingException",
            ApiError::RequestTimeout(_) => "RequestTimeoutException",
            ApiError::Unavailable(_) | ApiError::Server(_) => "ServerException",
            ApiError::MissingAuthenticationToken(_) => "MissingAuthenticationTokenException",
            ApiError::IncompleteSignature(_) => "IncompleteSignatureException",
            ApiError::UnrecognizedClient(_) => "UnrecognizedClientException",
            ApiError::InvalidSignature(_) => "InvalidSignatureException",
            ApiError::ExpiredToken(_) => "ExpiredTokenException",
            ApiError::AccessDenied(_) => "AccessDeniedException",
            ApiError::ResourceInUse(_) => "ResourceInUseException",
            ApiError::PlatformUnknown(_) => "PlatformUnknownException",
        }
    }

    /// The HTTP status of the error.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Relayed { status, .. } => {
                StatusCode::from_u16(*status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
            }
            ApiError::RequestTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::RequestTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            ApiError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::UnknownPath(_) => StatusCode::NOT_FOUND,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Server(_) => StatusCode::INTERNAL_SERVER_ERROR,
            _ => StatusCode::BAD_REQUEST,
        }
    }
}

impl From<NodeError> for ApiError {
    fn from(e: NodeError) -> Self {
        match e {
            NodeError::Unavailable(m) => ApiError::Unavailable(m),
            NodeError::Rejected(m) => ApiError::InvalidParameter(m),
            NodeError::Internal(m) => ApiError::Server(m),
        }
    }
}

impl From<crate::state::KvError> for ApiError {
    fn from(e: crate::state::KvError) -> Self {
        ApiError::Server(e.to_string())
    }
}

impl From<Rejection> for ApiError {
    fn from(r: Rejection) -> Self {
        match r {
            Rejection::ClusterNotFound => ApiError::cluster_not_found(),
            Rejection::ClusterContainsContainerInstances => ApiError::ClusterContainsContainerInstances(
                "The Cluster cannot be deleted while Container Instances are active or draining.".into(),
            ),
            Rejection::ClusterContainsServices => {
                ApiError::ClusterContainsServices("The Cluster cannot be deleted while Services are active.".into())
            }
            Rejection::ResourceNotFound => {
                ApiError::ResourceNotFound("The specified resource could not be found.".into())
            }
            Rejection::TooManyTags => ApiError::InvalidParameter("tags: a resource can have at most 50 tags".into()),
            Rejection::InstanceNotRegistered => {
                ApiError::InvalidParameter("The referenced container instance is not registered or is inactive.".into())
            }
            Rejection::TargetNotFound => ApiError::TargetNotFound(
                "Could not find the specified target for the attribute; check the targetId and targetType.".into(),
            ),
            Rejection::AttributeLimitExceeded => {
                ApiError::AttributeLimitExceeded("You can apply up to 10 custom attributes per resource.".into())
            }
            Rejection::MissingVersion => ApiError::MissingVersion(
                "The container instance does not report an agent version (versionInfo.agentVersion).".into(),
            ),
            Rejection::NoUpdateAvailable => {
                ApiError::NoUpdateAvailable("There is no update available for the container agent.".into())
            }
            Rejection::UpdateInProgress => {
                ApiError::UpdateInProgress("An agent update is already in progress on this container instance.".into())
            }
            Rejection::InstanceHasRunningTasks => {
                ApiError::InvalidParameter("Found running tasks on the instance.".into())
            }
            Rejection::TaskDefinitionNotFound => {
                ApiError::Client("The specified task definition does not exist.".into())
            }
            Rejection::ClusterContainsTasks => {
                ApiError::ClusterContainsTasks("The Cluster cannot be deleted while Tasks are active.".into())
            }
            Rejection::TaskDefinitionInactive => ApiError::Client("TaskDefinition is inactive".into()),
            Rejection::TaskNotFound => ApiError::InvalidParameter("The referenced task was not found.".into()),
            Rejection::ServiceNotFound => ApiError::ServiceNotFound("Service not found.".into()),
            Rejection::ServiceNotActive => ApiError::ServiceNotActive("Service was not ACTIVE.".into()),
            Rejection::ServiceNotIdempotent => {
                ApiError::InvalidParameter("Creation of service was not idempotent.".into())
            }
            Rejection::ServiceScaledAboveZero => {
                ApiError::InvalidParameter("The service cannot be stopped while it is scaled above 0.".into())
            }
            Rejection::StaleLeader => {
                ApiError::Unavailable("leadership changed before the decision was committed".into())
            }
            Rejection::DaemonMaximumPercent => ApiError::InvalidParameter(
                "deploymentConfiguration.maximumPercent: must be 100 for the DAEMON scheduling strategy".into(),
            ),
            Rejection::InvalidPlacementConstraint => ApiError::InvalidParameter(
                "placementConstraints: a memberOf expression of the launch does not parse".into(),
            ),
            Rejection::RequestIdReused => {
                ApiError::Client("The request id was already used by a different request.".into())
            }
            Rejection::KeyNameInUse => ApiError::InvalidParameter("name: an access key of that name exists".into()),
            Rejection::InstanceOfAnotherAgent => {
                ApiError::AccessDenied("containerInstanceArn: the container instance is bound to another agent".into())
            }
            Rejection::CapacityProviderInUse(name) => ApiError::ResourceInUse(format!(
                "The specified capacity provider is in use and cannot be removed. ({name} is in an ACTIVE service's strategy.)"
            )),
            Rejection::CapacityProviderNotAssociated => ApiError::InvalidParameter(
                "The specified capacity provider strategy cannot contain a capacity provider that is not associated with the cluster. Associate the capacity provider with the cluster or specify a valid capacity provider and try again.".into(),
            ),
            Rejection::TaskDefinitionStillActive => ApiError::Client(
                "The specified task definition is still in ACTIVE status. Please deregister the target and try again.".into(),
            ),
            Rejection::KeyNotFound => ApiError::ResourceNotFound("name: no access key has that name or id".into()),
        }
    }
}
