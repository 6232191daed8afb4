//! The measured path's HTTP client, kept lean so that the figures are the server's: plain
//! HTTP/1.1 on keep-alive connections (a pool per node, requests round-robin over the nodes,
//! each written and its answer read by the caller's own task),
//! bodies serialised once before the run and shared, and answers checked by status only (the
//! body is read to its end, not parsed). The setup calls and the secured cluster (SigV4 on
//! every request, HTTPS) use [`crate::ecs::Ecs`] instead.

use std::io::Write as _;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// One request, prepared once: its action's header and its body, serialised, and the body as
/// JSON for the signing client.
#[derive(Clone)]
pub struct Prepared {
    pub action: &'static str,
    pub json: serde_json::Value,
    target: String,
    body: Bytes,
}

impl Prepared {
    pub fn new(action: &'static str, body: &serde_json::Value) -> Prepared {
        Prepared {
            action,
            target: format!("{}{action}", ecsd_protocol::ecs::TARGET_PREFIX),
            body: Bytes::from(body.to_string()),
            json: body.clone(),
        }
    }
}

/// A keep-alive connection, with the buffers it reuses for every request.
struct Conn {
    stream: TcpStream,
    out: Vec<u8>,
    input: Vec<u8>,
}

impl Conn {
    /// Whether the peer has not closed the connection (nor sent anything unasked).
    fn is_open(&self) -> bool {
        let mut probe = [0u8; 1];
        matches!(self.stream.try_read(&mut probe), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
    }
}

/// A node: its address, and its idle connections.
struct Node {
    addr: String,
    idle: Mutex<Vec<Conn>>,
}

/// Keep-alive connections to the nodes; each request goes to the next node in turn.
pub struct Lean {
    nodes: Vec<Node>,
    turn: AtomicUsize,
    stale: bool,
}

/// A SigV4-shaped Authorization header, as [`crate::ecs::Ecs`] sends on an open cluster.
const AUTH: &str =
    "AWS4-HMAC-SHA256 Credential=AKIDBENCH/20261128/us-east-1/ecs/aws4_request, SignedHeaders=host, Signature=0";

/// The largest answer head read before giving up on it.
const MAX_HEAD: usize = 64 * 1024;

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

    /// Sends `request` to the next node; `Err` for anything but a 2xx answer. The request is
    /// written and its answer read by the calling task itself, with one write and as few reads
    /// as the answer needs: no connection task, no channel, no allocation once the connection's
    /// buffers have grown (as wrk does it).
    pub async fn send(&self, request: &Prepared, read: bool) -> Result<(), String> {
        let node = &self.nodes[self.turn.fetch_add(1, Ordering::Relaxed) % self.nodes.len()];
        let mut conn = loop {
            let idle = node.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
            match idle {
                Some(c) if c.is_open() => break c,
                // The node closed it while it was idle (an idle keep-alive connection is closed
                // after `api.header_read_timeout_ms`): take the next.
                Some(_) => continue,
                None => break connect(&node.addr).await?,
            }
        };
        let stale = if read && self.stale {
            "x-ecsd-consistency: stale\r\n"
        } else {
            ""
        };
        conn.out.clear();
        let _ = write!(
            conn.out,
            "POST / HTTP/1.1\r\nhost: {}\r\ncontent-type: application/x-amz-json-1.1\r\nx-amz-target: {}\r\n\
             authorization: {AUTH}\r\n{stale}content-length: {}\r\n\r\n",
            node.addr,
            request.target,
            request.body.len()
        );
        conn.out.extend_from_slice(&request.body);
        let fail = |e: std::io::Error| format!("{}: {e}", node.addr);
        conn.stream.write_all(&conn.out).await.map_err(fail)?;
        let (status, keep) = read_answer(&mut conn)
            .await
            .map_err(|e| format!("{}: {e}", node.addr))?;
        let result = if (200..300).contains(&status) {
            Ok(())
        } else {
            Err(format!("{status} {}", String::from_utf8_lossy(&conn.input)))
        };
        if keep {
            node.idle.lock().unwrap_or_else(|p| p.into_inner()).push(conn);
        }
        result
    }
}

/// Reads one answer: its status, whether the connection stays open, and its body into
/// `conn.input`. Only `content-length` framing is read (what the API answers with).
async fn read_answer(conn: &mut Conn) -> Result<(u16, bool), String> {
    conn.input.clear();
    let mut chunk = [0u8; 16 * 1024];
    let head_end = loop {
        if let Some(end) = conn.input.windows(4).position(|w| w == b"\r\n\r\n") {
            break end;
        }
        if conn.input.len() > MAX_HEAD {
            return Err("an answer's head is too long".into());
        }
        let n = conn.stream.read(&mut chunk).await.map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("the connection closed before an answer".into());
        }
        conn.input.extend_from_slice(&chunk[..n]);
    };
    let head = std::str::from_utf8(&conn.input[..head_end]).map_err(|_| "an answer's head is not text".to_string())?;
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| format!("not an HTTP answer: {head:?}"))?;
    let (mut length, mut keep) = (None, true);
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            length = value.parse::<usize>().ok();
        } else if name.eq_ignore_ascii_case("connection") && value.eq_ignore_ascii_case("close") {
            keep = false;
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(format!(
                "an answer in transfer-encoding {value} (only content-length is read)"
            ));
        }
    }
    let length = length.ok_or("an answer without content-length")?;
    let total = head_end + 4 + length;
    while conn.input.len() < total {
        let n = conn.stream.read(&mut chunk).await.map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("the connection closed in an answer's body".into());
        }
        conn.input.extend_from_slice(&chunk[..n]);
    }
    // Nothing follows an answer on a connection without pipelining: keep the body only.
    conn.input.truncate(total);
    conn.input.drain(..head_end + 4);
    Ok((status, keep))
}

async fn connect(addr: &str) -> Result<Conn, String> {
    let stream = TcpStream::connect(addr).await.map_err(|e| format!("{addr}: {e}"))?;
    let _ = stream.set_nodelay(true);
    Ok(Conn {
        stream,
        out: Vec::new(),
        input: Vec::new(),
    })
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
    async fn a_connection_the_server_closed_while_idle_is_replaced() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let accepted = Arc::new(AtomicUsize::new(0));
        let a = accepted.clone();
        tokio::spawn(async move {
            loop {
                let (mut socket, _) = listener.accept().await.unwrap();
                a.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    // One answer per connection, then close it (as an idle timeout does).
                    let mut chunk = [0u8; 4096];
                    let _ = socket.read(&mut chunk).await;
                    let _ = socket
                        .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}")
                        .await;
                });
            }
        });
        let lean = Lean::new(&[url], false).unwrap();
        let request = Prepared::new("DescribeClusters", &serde_json::json!({}));
        for _ in 0..3 {
            lean.send(&request, true).await.unwrap();
            // Until the close has arrived, the connection may still look open.
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 3, "a new connection for each");
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
