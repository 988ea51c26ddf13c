//! The API's TCP listener: a connection whose writes make no progress for
//! `api.write_stall_timeout_secs` is closed.
//!
//! A client that stops reading a response (a live stream, an export) leaves the server
//! with a full socket it can never finish writing to. Without a limit such a
//! connection lives as long as the client keeps it open, and a graceful shutdown,
//! which waits for every response to finish, would wait for it too.

use std::{
    future::Future as _,
    io,
    net::SocketAddr,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering::Relaxed},
    },
    task::{Context, Poll, ready},
    time::Duration,
};

use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::{TcpListener, TcpStream},
    time::Sleep,
};

/// Accepts connections that time out writes which stall (see the module docs). Serve
/// the API with `axum::serve(state.listener(tcp, stall), router(state))`
/// ([`crate::ApiState::listener`]), so `/metrics` counts the closed connections.
#[derive(Debug)]
pub struct ApiListener {
    inner: TcpListener,
    stall: Duration,
    stalled: Arc<AtomicU64>,
}

impl ApiListener {
    /// `inner`'s connections, closed when a write makes no progress for `stall`;
    /// `stalled` counts them.
    pub(crate) fn new(inner: TcpListener, stall: Duration, stalled: Arc<AtomicU64>) -> Self {
        Self {
            inner,
            stall,
            stalled,
        }
    }
}

impl axum::serve::Listener for ApiListener {
    type Io = StallGuard;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        let (io, addr) = axum::serve::Listener::accept(&mut self.inner).await;
        (
            StallGuard {
                io,
                stall: self.stall,
                stalled: None,
                count: self.stalled.clone(),
            },
            addr,
        )
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

/// A connection whose writes fail with [`io::ErrorKind::TimedOut`] once the socket has
/// accepted nothing for the stall time.
#[derive(Debug)]
pub struct StallGuard {
    io: TcpStream,
    stall: Duration,
    /// Running while the socket refuses writes.
    stalled: Option<Pin<Box<Sleep>>>,
    count: Arc<AtomicU64>,
}

impl StallGuard {
    /// Passes a finished write through (and forgets any stall); while the socket is
    /// full, fails once it has been full for the stall time.
    fn guard<T>(
        &mut self,
        cx: &mut Context<'_>,
        polled: Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        if polled.is_ready() {
            self.stalled = None;
            return polled;
        }
        let stall = self.stall;
        let timer = self
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(stall)));
        ready!(timer.as_mut().poll(cx));
        self.count.fetch_add(1, Relaxed);
        tracing::info!(stall = ?stall, "Closing a connection whose client stopped reading.");
        Poll::Ready(Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("the client read nothing for {stall:?}"),
        )))
    }
}

impl AsyncRead for StallGuard {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl AsyncWrite for StallGuard {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.io).poll_write(cx, buf);
        self.guard(cx, polled)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        self.guard(cx, polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let polled = Pin::new(&mut self.io).poll_flush(cx);
        self.guard(cx, polled)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let polled = Pin::new(&mut self.io).poll_shutdown(cx);
        self.guard(cx, polled)
    }
}
