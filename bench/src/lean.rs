//! The measured path's HTTP client, kept lean so that the figures are the server's: plain
//! HTTP/1.1 on keep-alive connections (a pool per node, requests round-robin over the nodes),
//! bodies serialised once before the run and shared, and answers checked by status only (the
//! body is read to its end, not parsed). The setup calls and the secured cluster (SigV4 on
//! every request, HTTPS) use [`crate::ecs::Ecs`] instead.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE, HOST};
use hyper_util::rt::TokioIo;

/// One request, prepared once: its action's header and its body, serialised, and the body as
/// JSON for the signing client.
#[derive(Clone)]
pub struct Prepared {
    pub action: &'static str,
    pub json: serde_json::Value,
    target: HeaderValue,
    body: Bytes,
}

impl Prepared {
    pub fn new(action: &'static str, body: &serde_json::Value) -> Prepared {
        Prepared {
            action,
            target: HeaderValue::from_str(&format!("{}{action}", ecsd_protocol::ecs::TARGET_PREFIX))
                .expect("an action name is a valid header value"),
            body: Bytes::from(body.to_string()),
            json: body.clone(),
        }
    }
}

/// A node: its address, and its idle connections.
struct Node {
    addr: String,
    host: HeaderValue,
    idle: Mutex<Vec<SendRequest<Full<Bytes>>>>,
}

/// Keep-alive connections to the nodes; each request goes to the next node in turn.
pub struct Lean {
    nodes: Vec<Node>,
    turn: AtomicUsize,
    stale: bool,
}

/// A SigV4-shaped Authorization header, as [`crate::ecs::Ecs`] sends on an open cluster.
const AUTH: HeaderValue = HeaderValue::from_static(
    "AWS4-HMAC-SHA256 Credential=AKIDBENCH/20261128/us-east-1/ecs/aws4_request, SignedHeaders=host, Signature=0",
);
const JSON_11: HeaderValue = HeaderValue::from_static("application/x-amz-json-1.1");
const STALE: HeaderValue = HeaderValue::from_static("stale");

impl Lean {
    /// A client of `endpoints` (`http://host:port`); with `stale`, reads ask for the node's
    /// own replica.
    pub fn new(endpoints: &[String], stale: bool) -> anyhow::Result<Lean> {
        let nodes = endpoints
            .iter()
            .map(|e| {
                let addr = e
                    .strip_prefix("http://")
                    .ok_or_else(|| anyhow::anyhow!("{e}: the lean client speaks plain http only"))?
                    .trim_end_matches('/')
                    .to_string();
                Ok(Node {
                    host: HeaderValue::from_str(&addr)?,
                    addr,
                    idle: Mutex::new(Vec::new()),
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(Lean {
            nodes,
            turn: AtomicUsize::new(0),
            stale,
        })
    }

    /// Sends `request` to the next node; `Err` for anything but a 2xx answer.
    pub async fn send(&self, request: &Prepared, read: bool) -> Result<(), String> {
        let node = &self.nodes[self.turn.fetch_add(1, Ordering::Relaxed) % self.nodes.len()];
        let idle = node.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let mut sender = match idle {
            Some(s) if !s.is_closed() => s,
            _ => connect(&node.addr).await?,
        };
        let mut http = hyper::Request::post("/")
            .body(Full::new(request.body.clone()))
            .map_err(|e| e.to_string())?;
        let headers = http.headers_mut();
        headers.insert(HOST, node.host.clone());
        headers.insert(CONTENT_TYPE, JSON_11);
        headers.insert("x-amz-target", request.target.clone());
        headers.insert(AUTHORIZATION, AUTH);
        if read && self.stale {
            headers.insert("x-ecsd-consistency", STALE);
        }
        sender.ready().await.map_err(|e| format!("{}: {e}", node.addr))?;
        let reply = sender
            .send_request(http)
            .await
            .map_err(|e| format!("{}: {e}", node.addr))?;
        let status = reply.status();
        let body = reply
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("{}: {e}", node.addr))?;
        node.idle.lock().unwrap_or_else(|p| p.into_inner()).push(sender);
        if status.is_success() {
            Ok(())
        } else {
            Err(format!("{status} {}", String::from_utf8_lossy(&body.to_bytes())))
        }
    }
}

async fn connect(addr: &str) -> Result<SendRequest<Full<Bytes>>, String> {
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| format!("{addr}: {e}"))?;
    let _ = stream.set_nodelay(true);
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("{addr}: {e}"))?;
    tokio::spawn(connection);
    Ok(sender)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::sync::Arc;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A server that answers each request on a connection with `status`, echoing the target
    /// header's action; counts connections and requests.
    async fn server(status: u16) -> (String, Arc<AtomicUsize>, Arc<Mutex<Vec<String>>>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (accepted, seen) = (Arc::new(AtomicUsize::new(0)), Arc::new(Mutex::new(Vec::new())));
        let (a, s) = (accepted.clone(), seen.clone());
        tokio::spawn(async move {
            loop {
                let (mut socket, _) = listener.accept().await.unwrap();
                a.fetch_add(1, Ordering::SeqCst);
                let s = s.clone();
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    loop {
                        let n = socket.read(&mut chunk).await.unwrap_or(0);
                        if n == 0 {
                            return;
                        }
                        buf.extend_from_slice(&chunk[..n]);
                        // Whole requests: headers, then a body of Content-Length bytes.
                        while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            let head = String::from_utf8_lossy(&buf[..end]).to_lowercase();
                            let length: usize = head
                                .lines()
                                .find_map(|l| l.strip_prefix("content-length: "))
                                .and_then(|v| v.trim().parse().ok())
                                .unwrap_or(0);
                            if buf.len() < end + 4 + length {
                                break;
                            }
                            let body = String::from_utf8_lossy(&buf[end + 4..end + 4 + length]).into_owned();
                            s.lock().unwrap().push(format!(
                                "{}|{body}",
                                head.lines().find(|l| l.starts_with("x-amz-target")).unwrap_or("")
                            ));
                            buf.drain(..end + 4 + length);
                            let reply = format!("HTTP/1.1 {status} X\r\ncontent-length: 2\r\n\r\n{{}}");
                            socket.write_all(reply.as_bytes()).await.unwrap();
                        }
                    }
                });
            }
        });
        (format!("http://{addr}"), accepted, seen)
    }

    #[tokio::test]
    async fn requests_reuse_one_connection_and_carry_the_prepared_body() {
        let (url, accepted, seen) = server(200).await;
        let lean = Lean::new(&[url], false).unwrap();
        let request = Prepared::new("DescribeClusters", &serde_json::json!({"clusters": ["bench"]}));
        for _ in 0..50 {
            lean.send(&request, true).await.unwrap();
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 1, "one keep-alive connection");
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 50);
        assert_eq!(
            seen[0],
            "x-amz-target: amazonec2containerservicev20141113.describeclusters|{\"clusters\":[\"bench\"]}"
        );
    }

    #[tokio::test]
    async fn an_answer_other_than_2xx_is_an_error_and_https_is_refused() {
        let (url, _, _) = server(400).await;
        let lean = Lean::new(&[url], false).unwrap();
        let request = Prepared::new("TagResource", &serde_json::json!({}));
        let e = lean.send(&request, false).await.unwrap_err();
        assert!(e.starts_with("400"), "{e}");
        assert!(Lean::new(&["https://127.0.0.1:1".to_string()], false).is_err());
    }
}
