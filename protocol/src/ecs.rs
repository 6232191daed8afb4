//! One small client of the ECS HTTP API (AWS JSON 1.1: `POST /` with an `X-Amz-Target` header).
//! Callers put their own policy on top: the agent's deadlines, the bench's round robin and
//! retries, the tests' assertions.

use serde_json::Value;

use crate::sigv4::Signer;

/// What `X-Amz-Target` starts with; the action's name follows.
pub const TARGET_PREFIX: &str = "AmazonEC2ContainerServiceV20141113.";

/// The content type of requests and answers.
pub const CONTENT_TYPE: &str = "application/x-amz-json-1.1";

/// A request for `action` to the endpoint `url` (`http://host:port`), with the ECS headers; the
/// caller adds the body, any other header and a timeout.
pub fn request(http: &reqwest::Client, url: &str, action: &str) -> reqwest::RequestBuilder {
    http.post(url)
        .header("x-amz-target", format!("{TARGET_PREFIX}{action}"))
        .header("content-type", CONTENT_TYPE)
}

/// An answer: its HTTP status and its body as JSON (`Null` when the body is not JSON).
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    pub status: u16,
    pub body: Value,
}

impl Reply {
    /// A 2xx answer.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

/// Sends `request` with `body`, unsigned. `Err` only when no answer came (connection, timeout).
pub async fn send(request: reqwest::RequestBuilder, body: &Value) -> Result<Reply, reqwest::Error> {
    send_as(request, body, None).await
}

/// Sends `request` with `body`, signed by `signer` when there is one.
pub async fn send_as(
    request: reqwest::RequestBuilder,
    body: &Value,
    signer: Option<&Signer>,
) -> Result<Reply, reqwest::Error> {
    let response = execute(request.body(body.to_string()), signer).await?;
    let status = response.status().as_u16();
    let bytes = response.bytes().await?;
    Ok(Reply {
        status,
        body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    })
}

/// Sends a request whose body is in memory, signed by `signer` when there is one. Should
/// signing fail all the same (only a streamed body cannot be signed), the request goes
/// unsigned and the server names what is missing.
pub async fn execute(request: reqwest::RequestBuilder, signer: Option<&Signer>) -> reqwest::Result<reqwest::Response> {
    let (http, request) = request.build_split();
    let mut request = request?;
    if let Some(signer) = signer {
        let _ = signer.sign(&mut request);
    }
    http.execute(request).await
}

/// Why [`call`] failed.
#[derive(Debug)]
pub enum CallError {
    /// No answer came.
    Transport(reqwest::Error),
    /// An answer other than 2xx.
    Status(Reply),
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::Transport(e) => write!(f, "{e}"),
            CallError::Status(reply) => write!(f, "{} {}", reply.status, reply.body),
        }
    }
}

impl std::error::Error for CallError {}

/// Calls `action` at `url` once, unsigned: the answer's body when it is 2xx, else why not.
pub async fn call(http: &reqwest::Client, url: &str, action: &str, body: &Value) -> Result<Value, CallError> {
    let reply = send(request(http, url, action), body)
        .await
        .map_err(CallError::Transport)?;
    if reply.is_success() {
        Ok(reply.body)
    } else {
        Err(CallError::Status(reply))
    }
}
