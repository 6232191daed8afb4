//! Cluster administration over HTTP: status, add-node, remove-node (used by `ecsd cluster`).

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::ApiState;
use crate::raft::{AdminOp, NodeError, NodeInfo};

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

type Reply = (StatusCode, Json<Value>);

fn error_reply(e: NodeError) -> Reply {
    (super::error::admin_status(&e), Json(json!({ "error": e.to_string() })))
}

pub async fn status(State(state): State<Arc<ApiState>>) -> Reply {
    let status = state.node.handle().cluster_status().await;
    match serde_json::to_value(status) {
        Ok(v) => (StatusCode::OK, Json(v)),
        Err(e) => error_reply(NodeError::Internal(e.to_string())),
    }
}

pub async fn add_node(State(state): State<Arc<ApiState>>, Json(req): Json<AddNodeRequest>) -> Reply {
    let op = AdminOp::AddNode {
        id: req.id,
        info: NodeInfo {
            rpc_addr: req.raft_addr,
            api_addr: req.api_addr,
        },
    };
    match state.node.handle().admin(op).await {
        Ok(()) => (StatusCode::OK, Json(json!({ "added": req.id }))),
        Err(e) => error_reply(e),
    }
}

pub async fn remove_node(State(state): State<Arc<ApiState>>, Json(req): Json<RemoveNodeRequest>) -> Reply {
    match state.node.handle().admin(AdminOp::RemoveNode { id: req.id }).await {
        Ok(()) => (StatusCode::OK, Json(json!({ "removed": req.id }))),
        Err(e) => error_reply(e),
    }
}
