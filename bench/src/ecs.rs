//! The bench's ECS client: round-robin over the nodes, one request per measured operation, and
//! retries for setup calls, on top of `ecsd_protocol::ecs`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail};
use ecsd_protocol::ecs;
use serde_json::Value;

/// An ECS client over plain HTTP (or HTTPS, signing every request), round-robin over the
/// nodes, retrying server errors.
pub struct Ecs {
    http: reqwest::Client,
    pub endpoints: Vec<String>,
    turn: AtomicUsize,
    /// Signs every request (SigV4), as an SDK does, in the measured path.
    signer: Option<ecsd_protocol::sigv4::Signer>,
}

/// A SigV4-shaped Authorization header: moto's server picks the service from its credential
/// scope (it checks no signature); ecsd ignores it.
const AUTHORIZATION: &str =
    "AWS4-HMAC-SHA256 Credential=AKIDBENCH/20261128/us-east-1/ecs/aws4_request, SignedHeaders=host, Signature=0";

impl Ecs {
    pub fn new(endpoints: Vec<String>) -> anyhow::Result<Ecs> {
        Ecs::secured(endpoints, None)
    }

    /// A client of a secured cluster: trusting its CA, signing with its key.
    pub fn secured(endpoints: Vec<String>, security: Option<&crate::cluster::Security>) -> anyhow::Result<Ecs> {
        let mut http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(256);
        if let Some(s) = security {
            http = http.add_root_certificate(reqwest::Certificate::from_pem(&s.ca_pem)?);
        }
        Ok(Ecs {
            http: http.build()?,
            endpoints,
            turn: Default::default(),
            signer: security.map(|s| s.signer()),
        })
    }

    /// Whether requests are signed (a secured cluster): the measured path then goes through
    /// this client, as an SDK's would, rather than the lean one.
    pub fn signs(&self) -> bool {
        self.signer.is_some()
    }

    /// Sends `request`, signed when the cluster is secured.
    async fn send(&self, request: reqwest::RequestBuilder) -> reqwest::Result<reqwest::Response> {
        ecs::execute(request, self.signer.as_ref()).await
    }

    /// The next node's request for `action`, with the bench's headers.
    fn next(&self, action: &str) -> reqwest::RequestBuilder {
        let n = self.turn.fetch_add(1, Ordering::Relaxed);
        let url = &self.endpoints[n % self.endpoints.len()];
        let request = ecs::request(&self.http, &format!("{url}/"), action);
        match self.signer {
            Some(_) => request,
            None => request.header("authorization", AUTHORIZATION),
        }
    }

    /// One request, no retry: the measured operation. `Err` for anything but a 2xx answer.
    pub async fn once(&self, action: &str, body: &Value, stale: bool) -> Result<Value, String> {
        let mut request = self.next(action);
        if stale {
            request = request.header("x-ecsd-consistency", "stale");
        }
        let reply = self
            .send(request.body(body.to_string()))
            .await
            .map_err(|e| format!("{action}: {e}"))?;
        let status = reply.status();
        let bytes = reply.bytes().await.map_err(|e| format!("{action}: {e}"))?;
        if !status.is_success() {
            return Err(format!("{action}: {status} {}", String::from_utf8_lossy(&bytes)));
        }
        serde_json::from_slice(&bytes).map_err(|e| format!("{action}: {e}"))
    }

    /// A setup call: retried on server errors and connection failures for up to 30 s.
    pub async fn call(&self, action: &str, body: Value) -> anyhow::Result<Value> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let reply = self.send(self.next(action).body(body.to_string())).await;
            match reply {
                Ok(r) if r.status().is_success() => return Ok(r.json().await?),
                Ok(r) if r.status().is_client_error() => {
                    bail!("{action}: {} {}", r.status(), r.text().await.unwrap_or_default())
                }
                Ok(_) | Err(_) if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(50)).await,
                Ok(r) => bail!("{action}: {} {}", r.status(), r.text().await.unwrap_or_default()),
                Err(e) => return Err(anyhow!("{action}: {e}")),
            }
        }
    }
}
