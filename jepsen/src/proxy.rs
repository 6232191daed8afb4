//! The `proxy` topology: faults without root. Every node listens on 127.0.0.1, and every
//! directed link (node a dialling node b) goes through its own TCP proxy, which can cut, heal,
//! delay and make lossy (the nemesis uses cut, heal and loss). Node a learns the proxies' addresses from its `[dial]`
//! table ([`Mesh::dial_map`]), while the Raft membership keeps the real listen addresses.
//!
//! A proxy sees byte streams, not packets, so it emulates what iptables `DROP` and netem do to a
//! TCP connection rather than the packets themselves:
//!
//! - **cut**: no bytes flow in either direction. The proxy stops reading, so the sender's
//!   buffers fill as they do when its packets are dropped; bytes it had already read are held.
//!   A connection accepted while the link is cut is neither connected onward nor read. On heal
//!   everything resumes where it stopped, as TCP retransmission does after a partition heals.
//!   End of stream and resets are held and delivered in order like data.
//! - **delay**: each chunk read from one side is written to the other no earlier than `delay`
//!   after it was read, in order.
//! - **loss**: TCP never loses bytes; a lost packet shows up as its retransmission. So each
//!   chunk, with probability `loss`, is held an extra [`RETRANSMIT`] (200 ms, Linux's minimum
//!   retransmission timeout) before delivery, and the chunks behind it wait too (head-of-line
//!   blocking, as in TCP).
//!
//! A state change applies to existing connections at once (a `watch` channel wakes every
//! connection task). Faults apply to both directions of a link's connections; [`Mesh::loss`]
//! and [`Mesh::delay`] act on the links into a node, that is on the connections other nodes
//! open to it (requests to it and its answers), not on the connections it opens itself.
//!
//! Clients talk to the nodes directly: only node-to-node links are proxied.

use std::collections::BTreeMap;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;

/// How long a "lost" chunk is held: Linux's minimum TCP retransmission timeout.
pub const RETRANSMIT: Duration = Duration::from_millis(200);

/// Largest chunk read at once.
const CHUNK_BYTES: usize = 64 * 1024;

/// Chunks held per direction of a connection before the proxy stops reading (at most
/// `CHUNK_BYTES` each): enough to keep a delayed link busy, bounded like a netem queue.
const QUEUE_CHUNKS: usize = 64;

/// The faults on one link. The default is a healthy link.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct LinkState {
    /// Nothing flows; held bytes are delivered on heal.
    pub cut: bool,
    /// Each chunk is delivered no earlier than this after it was read.
    pub delay: Duration,
    /// Probability (0 to 1) that a chunk is "lost": held an extra [`RETRANSMIT`].
    pub loss: f64,
}

/// A TCP proxy on 127.0.0.1 to one fixed target, with a [`LinkState`]. Dropped, it stops: the
/// listening port closes and so do its connections.
pub struct LinkProxy {
    addr: SocketAddr,
    state: watch::Sender<LinkState>,
    accept: JoinHandle<()>,
}

impl LinkProxy {
    /// Listens on a port of 127.0.0.1 the OS picks and forwards every connection to `target`.
    pub async fn start(target: SocketAddr) -> io::Result<LinkProxy> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        let addr = listener.local_addr()?;
        let (state, watcher) = watch::channel(LinkState::default());
        let accept = tokio::spawn(accept_loop(listener, target, watcher));
        Ok(LinkProxy { addr, state, accept })
    }

    /// The address to connect to instead of the target.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Replaces the link's faults; existing connections follow at once.
    pub fn set(&self, state: LinkState) {
        self.state.send_replace(state);
    }

    /// Changes some of the link's faults, keeping the others.
    pub fn update(&self, change: impl FnOnce(&mut LinkState)) {
        self.state.send_modify(change);
    }

    /// The link's current faults.
    pub fn state(&self) -> LinkState {
        *self.state.borrow()
    }
}

impl Drop for LinkProxy {
    fn drop(&mut self) {
        // The accept task owns the listener and, in a JoinSet, every connection task: aborting
        // it drops them all, which closes the port and every socket.
        self.accept.abort();
    }
}

/// Accepts connections and relays each in a task of its own, until aborted.
async fn accept_loop(listener: TcpListener, target: SocketAddr, state: watch::Receiver<LinkState>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    connections.spawn(relay(stream, target, state.clone()));
                }
                // Out of file descriptors or an aborted handshake: try again shortly.
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            },
            // Reap finished connections so the set does not grow.
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

/// Relays one accepted connection to `target` under the link's state.
async fn relay(mut client: TcpStream, target: SocketAddr, mut state: watch::Receiver<LinkState>) {
    // A cut link does not connect onward (the SYN would be dropped) until healed.
    if state.wait_for(|s| !s.cut).await.is_err() {
        return;
    }
    let mut upstream = match TcpStream::connect(target).await {
        Ok(stream) => stream,
        Err(_) => {
            // Refused or unreachable: the dialler sees a reset, as it would without the proxy.
            let _ = client.set_zero_linger();
            return;
        }
    };
    let _ = client.set_nodelay(true);
    let _ = upstream.set_nodelay(true);
    let (client_read, client_write) = client.split();
    let (upstream_read, upstream_write) = upstream.split();
    let relayed = tokio::try_join!(
        pipe(client_read, upstream_write, state.clone()),
        pipe(upstream_read, client_write, state),
    );
    if relayed.is_err() {
        // One side reset or failed: reset the other too rather than close it cleanly.
        let _ = client.set_zero_linger();
        let _ = upstream.set_zero_linger();
    }
}

/// What the reader hands the writer of one direction.
struct Chunk {
    read_at: Instant,
    /// Extra hold of a "lost" chunk.
    extra: Duration,
    kind: ChunkKind,
}

enum ChunkKind {
    Data(Vec<u8>),
    /// The source closed its side.
    End,
    /// Reading the source failed (a reset): the whole connection is reset once delivered.
    Reset(io::Error),
}

/// Moves bytes from `src` to `dst` under the link's state: a reader and a writer joined by a
/// bounded queue, so a held or delayed stream stops reading once the queue is full.
async fn pipe<R, W>(src: R, dst: W, state: watch::Receiver<LinkState>) -> io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let (tx, rx) = mpsc::channel(QUEUE_CHUNKS);
    tokio::try_join!(read_side(src, tx, state.clone()), write_side(dst, rx, state))?;
    Ok(())
}

/// The error a connection task ends with when its proxy is gone.
fn proxy_gone(_: watch::error::RecvError) -> io::Error {
    io::Error::new(io::ErrorKind::ConnectionAborted, "link proxy stopped")
}

/// Whether a chunk read now is "lost" on a link with loss probability `p`.
fn lost(p: f64) -> bool {
    p > 0.0 && rand::random::<f64>() < p
}

async fn read_side<R: AsyncRead + Unpin>(
    mut src: R,
    tx: mpsc::Sender<Chunk>,
    mut state: watch::Receiver<LinkState>,
) -> io::Result<()> {
    let mut buf = vec![0u8; CHUNK_BYTES];
    loop {
        // A cut link reads nothing: the sender's buffers fill as if its packets were dropped.
        state.wait_for(|s| !s.cut).await.map_err(proxy_gone)?;
        let read = tokio::select! {
            read = src.read(&mut buf) => read,
            // Re-check the state (a cut stops reading at once); reading is cancel-safe.
            changed = state.changed() => {
                changed.map_err(proxy_gone)?;
                continue;
            }
        };
        let loss = state.borrow().loss;
        let (kind, last) = match read {
            Ok(0) => (ChunkKind::End, true),
            Ok(n) => (ChunkKind::Data(buf[..n].to_vec()), false),
            Err(e) => (ChunkKind::Reset(e), true),
        };
        let chunk = Chunk {
            read_at: Instant::now(),
            extra: if lost(loss) { RETRANSMIT } else { Duration::ZERO },
            kind,
        };
        // The writer is gone only when the connection is being torn down.
        if tx.send(chunk).await.is_err() || last {
            return Ok(());
        }
    }
}

async fn write_side<W: AsyncWrite + Unpin>(
    mut dst: W,
    mut rx: mpsc::Receiver<Chunk>,
    mut state: watch::Receiver<LinkState>,
) -> io::Result<()> {
    while let Some(chunk) = rx.recv().await {
        // Wait until the link is up and the chunk's delay (under the current state) is over.
        loop {
            let now = *state.borrow_and_update();
            if now.cut {
                state.changed().await.map_err(proxy_gone)?;
                continue;
            }
            let due = chunk.read_at + now.delay + chunk.extra;
            if Instant::now() >= due {
                break;
            }
            tokio::select! {
                _ = tokio::time::sleep_until(due) => {}
                changed = state.changed() => changed.map_err(proxy_gone)?,
            }
        }
        match chunk.kind {
            ChunkKind::Data(bytes) => dst.write_all(&bytes).await?,
            ChunkKind::End => {
                dst.shutdown().await?;
                return Ok(());
            }
            ChunkKind::Reset(e) => return Err(e),
        }
    }
    Ok(())
}

/// The two proxies of the directed link from one node to another.
struct Link {
    /// To the target's Raft (gRPC) address.
    raft: LinkProxy,
    /// To the target's API address (forwarded writes).
    api: LinkProxy,
}

impl Link {
    fn update(&self, change: impl Fn(&mut LinkState)) {
        self.raft.update(&change);
        self.api.update(&change);
    }
}

/// The link proxies of a cluster: for every ordered pair of nodes (a, b), a != b, one proxy to
/// b's Raft address and one to b's API address, which node a dials instead of b's. Nodes are
/// numbered from 1. Dropped, every proxy stops.
pub struct Mesh {
    raft_addrs: Vec<SocketAddr>,
    api_addrs: Vec<SocketAddr>,
    links: BTreeMap<(usize, usize), Link>,
}

impl Mesh {
    /// Starts the proxies for the nodes whose real listen addresses are `raft_addrs[i - 1]` and
    /// `api_addrs[i - 1]`.
    pub async fn start(raft_addrs: &[SocketAddr], api_addrs: &[SocketAddr]) -> io::Result<Mesh> {
        if raft_addrs.len() != api_addrs.len() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "{} raft addresses but {} api addresses",
                    raft_addrs.len(),
                    api_addrs.len()
                ),
            ));
        }
        let n = raft_addrs.len();
        let mut links = BTreeMap::new();
        for a in 1..=n {
            for b in (1..=n).filter(|b| *b != a) {
                let link = Link {
                    raft: LinkProxy::start(raft_addrs[b - 1]).await?,
                    api: LinkProxy::start(api_addrs[b - 1]).await?,
                };
                links.insert((a, b), link);
            }
        }
        Ok(Mesh {
            raft_addrs: raft_addrs.to_vec(),
            api_addrs: api_addrs.to_vec(),
            links,
        })
    }

    /// How many nodes the mesh connects.
    pub fn nodes(&self) -> usize {
        self.raft_addrs.len()
    }

    /// Node `a`'s `[dial]` entries: every other node's real Raft and API address, each mapped to
    /// the address of the proxy on the link from `a` to it. Empty for an unknown node.
    pub fn dial_map(&self, a: usize) -> Vec<(String, String)> {
        self.links
            .iter()
            .filter(|((from, _), _)| *from == a)
            .flat_map(|((_, b), link)| {
                [
                    (self.raft_addrs[b - 1].to_string(), link.raft.addr().to_string()),
                    (self.api_addrs[b - 1].to_string(), link.api.addr().to_string()),
                ]
            })
            .collect()
    }

    /// The faults on the link from node `a` to node `b`, if there is such a link.
    pub fn state(&self, a: usize, b: usize) -> Option<LinkState> {
        self.links.get(&(a, b)).map(|link| link.raft.state())
    }

    fn check(&self, node: usize) -> Result<(), String> {
        if (1..=self.nodes()).contains(&node) {
            Ok(())
        } else {
            Err(format!(
                "node {node} is not proxied: nodes are 1 to {} (clients' links are never cut)",
                self.nodes()
            ))
        }
    }

    /// Stops all traffic between nodes `a` and `b`, in both directions.
    pub fn cut(&self, a: usize, b: usize) -> Result<(), String> {
        self.check(a)?;
        self.check(b)?;
        for key in [(a, b), (b, a)] {
            if let Some(link) = self.links.get(&key) {
                link.update(|s| s.cut = true);
            }
        }
        Ok(())
    }

    /// Splits the nodes into groups that cannot reach one another; links within a group and of
    /// nodes in no group are left alone.
    pub fn partition(&self, groups: &[Vec<usize>]) -> Result<(), String> {
        for node in groups.iter().flatten() {
            self.check(*node)?;
        }
        for (a, b) in crate::topology::pairs_across(groups) {
            self.cut(a, b)?;
        }
        Ok(())
    }

    /// Makes every link into `node` lose this fraction (0 to 1) of its chunks (see the module
    /// documentation for what a loss is on a TCP stream).
    pub fn loss(&self, node: usize, probability: f64) -> Result<(), String> {
        self.check(node)?;
        if !(0.0..=1.0).contains(&probability) {
            return Err(format!("loss probability {probability} is not between 0 and 1"));
        }
        self.update_links_into(node, |s| s.loss = probability);
        Ok(())
    }

    /// Delays every link into `node` by `delay`.
    pub fn delay(&self, node: usize, delay: Duration) -> Result<(), String> {
        self.check(node)?;
        self.update_links_into(node, |s| s.delay = delay);
        Ok(())
    }

    fn update_links_into(&self, node: usize, change: impl Fn(&mut LinkState)) {
        for link in self.links.iter().filter(|((_, to), _)| *to == node).map(|(_, l)| l) {
            link.update(&change);
        }
    }

    /// Removes every fault.
    pub fn heal(&self) -> Result<(), String> {
        for link in self.links.values() {
            link.raft.set(LinkState::default());
            link.api.set(LinkState::default());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GENEROUS: Duration = Duration::from_secs(5);

    /// An echo server on 127.0.0.1; it runs until the test's runtime stops.
    async fn echo_server() -> SocketAddr {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let (mut r, mut w) = stream.split();
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                });
            }
        });
        addr
    }

    /// Sends `msg` and reads the echo, within `within`.
    async fn round_trip(stream: &mut TcpStream, msg: &[u8], within: Duration) -> Option<Duration> {
        let started = Instant::now();
        stream.write_all(msg).await.unwrap();
        let mut back = vec![0u8; msg.len()];
        match tokio::time::timeout(within, stream.read_exact(&mut back)).await {
            Ok(read) => {
                read.unwrap();
                assert_eq!(back, msg);
                Some(started.elapsed())
            }
            Err(_) => None,
        }
    }

    async fn connected(proxy: &LinkProxy) -> TcpStream {
        let mut stream = TcpStream::connect(proxy.addr()).await.unwrap();
        stream.set_nodelay(true).unwrap();
        // The first round trip proves the onward connection is up.
        assert!(round_trip(&mut stream, b"hello", GENEROUS).await.is_some());
        stream
    }

    #[tokio::test]
    async fn echoes_through_the_proxy() {
        let proxy = LinkProxy::start(echo_server().await).await.unwrap();
        assert!(proxy.addr().ip().is_loopback());
        let mut stream = connected(&proxy).await;
        let big: Vec<u8> = (0..1_000_000u32).map(|i| i as u8).collect();
        assert!(round_trip(&mut stream, &big, GENEROUS).await.is_some());
    }

    #[tokio::test]
    async fn a_cut_holds_bytes_until_healed() {
        let proxy = LinkProxy::start(echo_server().await).await.unwrap();
        let mut stream = connected(&proxy).await;
        proxy.set(LinkState {
            cut: true,
            ..LinkState::default()
        });
        stream.write_all(b"during the cut").await.unwrap();
        let mut back = [0u8; 14];
        let read = tokio::time::timeout(Duration::from_millis(300), stream.read_exact(&mut back)).await;
        assert!(read.is_err(), "an answer crossed a cut link");
        // A connection opened during the cut is accepted but goes nowhere.
        let mut late = TcpStream::connect(proxy.addr()).await.unwrap();
        late.write_all(b"late").await.unwrap();
        proxy.set(LinkState::default());
        tokio::time::timeout(GENEROUS, stream.read_exact(&mut back))
            .await
            .expect("held bytes were not delivered after the heal")
            .unwrap();
        assert_eq!(&back, b"during the cut");
        let mut late_back = [0u8; 4];
        tokio::time::timeout(GENEROUS, late.read_exact(&mut late_back))
            .await
            .expect("a connection opened during the cut never went through")
            .unwrap();
        assert_eq!(&late_back, b"late");
    }

    #[tokio::test]
    async fn delay_holds_each_chunk() {
        let proxy = LinkProxy::start(echo_server().await).await.unwrap();
        let mut stream = connected(&proxy).await;
        proxy.set(LinkState {
            delay: Duration::from_millis(100),
            ..LinkState::default()
        });
        // Both directions go through the link: at least one delay each way.
        let rtt = round_trip(&mut stream, b"slow", GENEROUS).await.expect("no answer");
        assert!(rtt >= Duration::from_millis(200), "round trip took {rtt:?}");
    }

    #[tokio::test]
    async fn total_loss_costs_a_retransmission() {
        let proxy = LinkProxy::start(echo_server().await).await.unwrap();
        let mut stream = connected(&proxy).await;
        proxy.set(LinkState {
            loss: 1.0,
            ..LinkState::default()
        });
        // Every chunk is lost once, in both directions.
        let rtt = round_trip(&mut stream, b"lossy", GENEROUS).await.expect("no answer");
        assert!(rtt >= 2 * RETRANSMIT, "round trip took {rtt:?}");
    }

    #[tokio::test]
    async fn a_dropped_proxy_closes_its_port_and_connections() {
        let proxy = LinkProxy::start(echo_server().await).await.unwrap();
        let addr = proxy.addr();
        let mut stream = connected(&proxy).await;
        drop(proxy);
        let closed = tokio::time::timeout(GENEROUS, async {
            while TcpStream::connect(addr).await.is_ok() {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await;
        assert!(closed.is_ok(), "the port still accepts connections");
        let mut buf = [0u8; 1];
        let read = tokio::time::timeout(GENEROUS, stream.read(&mut buf))
            .await
            .expect("the relayed connection stayed open");
        assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    }

    #[tokio::test]
    async fn mesh_dial_maps_and_partitions() {
        let n = 4;
        let mut raft = Vec::new();
        let mut api = Vec::new();
        for _ in 0..n {
            raft.push(echo_server().await);
            api.push(echo_server().await);
        }
        let mesh = Mesh::start(&raft, &api).await.unwrap();
        assert_eq!(mesh.nodes(), n);
        for a in 1..=n {
            let map = mesh.dial_map(a);
            assert_eq!(map.len(), 2 * (n - 1));
            let real: Vec<String> = (1..=n)
                .filter(|b| *b != a)
                .flat_map(|b| [raft[b - 1].to_string(), api[b - 1].to_string()])
                .collect();
            for (from, _) in &map {
                assert!(real.contains(from), "{from} is not another node's address");
            }
            assert!(!map.iter().any(|(from, _)| *from == raft[a - 1].to_string()));
        }
        assert!(mesh.dial_map(n + 1).is_empty());

        // The proxies in node 1's map reach the right targets.
        let (target, via) = &mesh.dial_map(1)[0];
        let mut stream = TcpStream::connect(via.as_str()).await.unwrap();
        assert!(round_trip(&mut stream, b"x", GENEROUS).await.is_some());
        assert!(raft.iter().chain(&api).any(|a| a.to_string() == *target));

        mesh.partition(&[vec![1, 2], vec![3]]).unwrap();
        let group = |i: usize| match i {
            1 | 2 => Some(0),
            3 => Some(1),
            _ => None,
        };
        for a in 1..=n {
            for b in (1..=n).filter(|b| *b != a) {
                let between = matches!((group(a), group(b)), (Some(x), Some(y)) if x != y);
                assert_eq!(mesh.state(a, b).unwrap().cut, between, "link {a}->{b}");
            }
        }
        // A cut applies to the proxied connections too.
        let (_, via) = mesh
            .dial_map(1)
            .into_iter()
            .find(|(to, _)| *to == raft[2].to_string())
            .unwrap();
        let mut cut = TcpStream::connect(via.as_str()).await.unwrap();
        assert!(round_trip(&mut cut, b"y", Duration::from_millis(300)).await.is_none());

        mesh.loss(4, 0.5).unwrap();
        mesh.delay(4, Duration::from_millis(5)).unwrap();
        assert_eq!(mesh.state(1, 4).unwrap().loss, 0.5);
        assert_eq!(mesh.state(4, 1).unwrap().loss, 0.0);
        assert!(mesh.loss(4, 1.5).is_err());
        assert!(mesh.cut(0, 1).is_err());

        mesh.heal().unwrap();
        for a in 1..=n {
            for b in (1..=n).filter(|b| *b != a) {
                assert_eq!(mesh.state(a, b), Some(LinkState::default()));
            }
        }
        let mut back = [0u8; 1];
        tokio::time::timeout(GENEROUS, cut.read_exact(&mut back))
            .await
            .expect("the healed link delivered nothing")
            .unwrap();
        assert_eq!(&back, b"y");
    }
}
