//! A minimal ECS client for the workloads: AWS JSON 1.1 over HTTP, with the outcome classified
//! as Jepsen needs it.

use std::time::Duration;

use ecsd_protocol::sigv4::{Credentials, Signer};
use serde_json::Value;

/// How a call ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Ok(Value),
    /// A definite refusal (HTTP 4xx): it did not take effect.
    Refused(String),
    /// No answer, or a server error: a mutation may or may not have taken effect.
    Unknown(String),
}

#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    /// The self-test's weakening: reads ask for the node's local state (`x-ecsd-consistency:
    /// stale`), with no read-index, so a partitioned node answers from the past.
    stale_reads: bool,
    /// With `--secure`: every request signed, over HTTPS to the `http://` URLs it is given.
    signer: Option<Signer>,
}

impl Client {
    /// A client of a secured cluster (`security`), or of an open one.
    pub fn with(timeout: Duration, stale_reads: bool, security: Option<&crate::secure::Security>) -> Client {
        let mut http = reqwest::Client::builder().timeout(timeout).connect_timeout(timeout);
        if let Some(s) = security {
            http = http.add_root_certificate(reqwest::Certificate::from_pem(&s.ca_pem).expect("the run's CA"));
        }
        Client {
            http: http.build().expect("an HTTP client"),
            stale_reads,
            signer: security.map(|s| s.signer()),
        }
    }

    /// `url` as this client reaches it: `https` when secured.
    pub fn url(&self, url: &str) -> String {
        match (&self.signer, url.strip_prefix("http://")) {
            (Some(_), Some(rest)) => format!("https://{rest}"),
            _ => url.to_string(),
        }
    }

    /// Sends `request`, signed when secured.
    async fn execute(&self, request: reqwest::RequestBuilder) -> reqwest::Result<reqwest::Response> {
        ecsd_protocol::ecs::execute(request, self.signer.as_ref()).await
    }

    /// Creates an access key with the client's (root) key: its credentials.
    pub async fn create_key(&self, url: &str, name: &str, role: &str) -> Result<Credentials, String> {
        let body = serde_json::json!({"name": name, "role": role});
        let request = self
            .http
            .post(format!("{}/cluster/keys/create", self.url(url)))
            .header("content-type", "application/json")
            .body(body.to_string());
        let reply = self.execute(request).await.map_err(|e| e.to_string())?;
        let key: Value = reply.json().await.map_err(|e| e.to_string())?;
        match (key["accessKeyId"].as_str(), key["secretAccessKey"].as_str()) {
            (Some(id), Some(secret)) => Ok(Credentials::new(id, secret)),
            _ => Err(format!("create key {name}: {key}")),
        }
    }

    /// Calls `action` at `url` (a node's ECS API).
    pub async fn call(&self, url: &str, action: &str, body: Value) -> Outcome {
        self.send(url, action, body, false).await
    }

    /// Calls a read-only `action`: stale when the client was made to weaken reads.
    pub async fn read(&self, url: &str, action: &str, body: Value) -> Outcome {
        self.send(url, action, body, self.stale_reads).await
    }

    async fn send(&self, url: &str, action: &str, body: Value, stale: bool) -> Outcome {
        let mut request = ecsd_protocol::ecs::request(&self.http, &format!("{}/", self.url(url)), action);
        if stale {
            request = request.header("x-ecsd-consistency", "stale");
        }
        let reply = self.execute(request.body(body.to_string())).await;
        let reply = match reply {
            Ok(r) => r,
            Err(e) => return Outcome::Unknown(e.to_string()),
        };
        let status = reply.status();
        let value: Value = match reply.json().await {
            Ok(v) => v,
            Err(e) => return Outcome::Unknown(format!("{status}: {e}")),
        };
        if status.is_success() {
            Outcome::Ok(value)
        } else if status.is_client_error() {
            Outcome::Refused(format!(
                "{} {}",
                value["__type"].as_str().unwrap_or("?"),
                value["message"].as_str().unwrap_or("")
            ))
        } else {
            Outcome::Unknown(format!("{status} {}", value["message"].as_str().unwrap_or("")))
        }
    }

    /// Posts a cluster admin request (`/cluster/add-node`, `/cluster/remove-node`); an error
    /// carries the HTTP status, if there was an answer.
    pub async fn admin(&self, url: &str, path: &str, body: Value) -> Result<(), (Option<u16>, String)> {
        let request = self
            .http
            .post(format!("{}{path}", self.url(url)))
            .header("content-type", "application/json")
            .body(body.to_string());
        let reply = self.execute(request).await.map_err(|e| (None, e.to_string()))?;
        let status = reply.status();
        if status.is_success() {
            return Ok(());
        }
        let text = reply.text().await.unwrap_or_default();
        Err((Some(status.as_u16()), format!("{status}: {text}")))
    }

    /// The leader node id one node reports, if any.
    pub async fn leader(&self, url: &str) -> Option<u64> {
        self.status(url).await?["leader"].as_u64()
    }

    /// One node's `/cluster/status`: the leader and term it knows, and each member's own
    /// report.
    pub async fn status(&self, url: &str) -> Option<Value> {
        let request = self.http.get(format!("{}/cluster/status", self.url(url)));
        let r = self.execute(request).await.ok()?;
        r.json().await.ok()
    }

    /// The term in which node `id` (serving at `url`) leads, if it says itself that it leads
    /// in the newest term it knows of.
    pub async fn leads(&self, url: &str, id: u64) -> Option<u64> {
        let status = self.status(url).await?;
        let term = status["term"].as_u64()?;
        let me = status["members"].as_array()?.iter().find(|m| m["id"] == id)?;
        (me["role"] == "leader" && me["term"].as_u64() == Some(term) && status["leader"] == id).then_some(term)
    }
}
