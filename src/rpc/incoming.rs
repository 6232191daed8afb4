//! The node-to-node port's connections, bounded: at most `max` open at once (one more is
//! closed at once), and each must send the whole HTTP/2 client preface (24 bytes) within
//! `preface`, so a client that connects and says nothing, or stops half-way, cannot hold a
//! socket. After the preface, HTTP/2 keep-alive pings (set on the server) check the peer.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::{Stream, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Sleep;
use tonic::transport::server::{Connected, TcpConnectInfo};

/// An accepted connection, holding its place under the cap until it is dropped.
pub struct Bounded {
    stream: TcpStream,
    _permit: OwnedSemaphorePermit,
    /// Until the preface has arrived: when the connection is given up.
    preface: Option<Pin<Box<Sleep>>>,
    /// Bytes read so far, counted up to the preface's length.
    read: usize,
}

/// The length of the HTTP/2 client connection preface (`PRI * HTTP/2.0…`).
const PREFACE_LEN: usize = 24;

/// The connections of `listener`, at most `max` at once, each with `preface` to start talking.
pub fn bounded(
    listener: TcpListener,
    max: usize,
    preface: Duration,
) -> impl Stream<Item = io::Result<Bounded>> + Send + 'static {
    let slots = Arc::new(Semaphore::new(max));
    tokio_stream::wrappers::TcpListenerStream::new(listener).filter_map(move |conn| {
        let slots = slots.clone();
        async move {
            let stream = match conn {
                Ok(stream) => stream,
                // A connection reset before it was accepted, or no file descriptor left: skip
                // it (after a pause, so a shortage does not spin), and keep serving.
                Err(e) => {
                    tracing::warn!(error = %e, "accepting a node-to-node connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    return None;
                }
            };
            let Ok(permit) = slots.try_acquire_owned() else {
                metrics::counter!("ecsd_grpc_connections_refused_total").increment(1);
                tracing::debug!("node-to-node connection refused: at the connection cap");
                return None;
            };
            // Small RPCs must not wait for Nagle's algorithm (a 40 ms stall per forward).
            let _ = stream.set_nodelay(true);
            Some(Ok(Bounded {
                stream,
                _permit: permit,
                preface: Some(Box::pin(tokio::time::sleep(preface))),
                read: 0,
            }))
        }
    })
}

impl Connected for Bounded {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.stream.connect_info()
    }
}

impl AsyncRead for Bounded {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.stream).poll_read(cx, buf);
        match &polled {
            Poll::Ready(Ok(())) if self.preface.is_some() => {
                self.read += buf.filled().len() - before;
                if self.read >= PREFACE_LEN {
                    self.preface = None;
                }
            }
            Poll::Pending => {
                if let Some(deadline) = self.preface.as_mut() {
                    if deadline.as_mut().poll(cx).is_ready() {
                        return Poll::Ready(Err(io::Error::new(
                            io::ErrorKind::TimedOut,
                            "no bytes within the preface timeout",
                        )));
                    }
                }
            }
            _ => {}
        }
        polled
    }
}

impl AsyncWrite for Bounded {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}
