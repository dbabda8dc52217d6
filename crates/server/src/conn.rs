//! The connection layer of `serve`: an HTTP/1 accept loop with a
//! connection limit, a header read timeout and an idle keep-alive timeout
//! per connection, and problem JSON for the answers the HTTP parser gives
//! by itself (a malformed or oversized request head).
//!
//! `axum::serve` has none of these limits, so a client that opens
//! connections and sends a partial request head holds a file descriptor
//! for ever; enough of them take the server down. Here each connection has
//! a watchdog that closes it when
//! - its request head (request line and headers) has not fully arrived
//!   [`HttpLimits::header_read_timeout`] after the connection opened or
//!   after the first byte of a following request, however slowly bytes
//!   trickle in; or
//! - it has been idle between requests (no request in flight, no byte
//!   moving) for [`HttpLimits::idle_timeout`].
//!
//! A request in flight is never cut by the watchdog: its body has its own
//! deadline ([`HttpLimits::body_read_timeout`], enforced by the router's
//! body middleware, a 408), and a handler runs to its end. At most
//! [`HttpLimits::max_connections`] connections are open at once; the accept
//! loop waits for a free slot before it accepts the next, so further
//! clients wait in the kernel's backlog instead of taking descriptors the
//! database and the actuators need.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{ready, Context, Poll};
use std::time::Duration;

use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Notify, Semaphore};
use tokio::time::Instant;
use tower::ServiceExt;

/// Largest request head (request line and headers together), bytes; a
/// larger one is answered 431 as problem JSON and the connection closed.
pub const MAX_HEADER_BYTES: usize = 64 * 1024;

/// Most header fields in one request; more is a 431 as for
/// [`MAX_HEADER_BYTES`].
pub const MAX_HEADER_COUNT: usize = 100;

/// File descriptors kept free of connections for the database pool, the
/// webhook actuator's connections, log files and the listener itself.
pub const RESERVED_FDS: u64 = 256;

/// Upper bound of the default connection limit (each connection may hold
/// up to [`MAX_HEADER_BYTES`] of buffered head).
pub const DEFAULT_MAX_CONNECTIONS_CAP: u64 = 8192;

/// Time limits and the connection limit of the HTTP listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpLimits {
    /// Longest a client may take to send a request head, from the
    /// connection's start or from the first byte of a following request.
    pub header_read_timeout: Duration,
    /// Longest a whole request body may take to arrive once its head has
    /// (a 408 beyond). Enforced by the router (see `http::read_body`).
    pub body_read_timeout: Duration,
    /// A keep-alive connection with no request in flight and no byte moving
    /// for this long is closed.
    pub idle_timeout: Duration,
    /// Most connections open at once.
    pub max_connections: usize,
}

impl HttpLimits {
    /// Default header read timeout.
    pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
    /// Default body read timeout.
    pub const DEFAULT_BODY_READ_TIMEOUT: Duration = Duration::from_secs(30);
    /// Default idle keep-alive timeout.
    pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

    /// The defaults, with the connection limit derived from the process's
    /// descriptor limit (see [`default_max_connections`]).
    pub fn defaults() -> HttpLimits {
        HttpLimits {
            header_read_timeout: Self::DEFAULT_HEADER_READ_TIMEOUT,
            body_read_timeout: Self::DEFAULT_BODY_READ_TIMEOUT,
            idle_timeout: Self::DEFAULT_IDLE_TIMEOUT,
            max_connections: default_max_connections(fd_limit()) as usize,
        }
    }

    /// Checks the limits against each other and against `fd_limit`, the
    /// process's descriptor limit (`None` when unknown): every rule broken,
    /// each naming its `serve` flag.
    pub fn validate(&self, fd_limit: Option<u64>) -> Result<(), String> {
        let mut errs = Vec::new();
        for (flag, d) in [
            ("--header-read-timeout", self.header_read_timeout),
            ("--body-read-timeout", self.body_read_timeout),
            ("--idle-timeout", self.idle_timeout),
        ] {
            if d < Duration::from_millis(100) || d > Duration::from_secs(3600) {
                errs.push(format!("{flag} must be between 100ms and 1h"));
            }
        }
        if self.max_connections == 0 {
            errs.push("--max-connections must be at least 1".to_string());
        }
        if let Some(fds) = fd_limit {
            let room = fds.saturating_sub(RESERVED_FDS);
            if self.max_connections as u64 > room {
                errs.push(format!(
                    "--max-connections must leave {RESERVED_FDS} of the process's {fds} file descriptors (RLIMIT_NOFILE) free for the database and the actuators: at most {room}; raise the limit (ulimit -n) for more"
                ));
            }
        }
        if errs.is_empty() {
            Ok(())
        } else {
            Err(errs.join("; "))
        }
    }
}

/// The process's soft limit of open file descriptors (RLIMIT_NOFILE);
/// `None` when unlimited or unknown.
pub fn fd_limit() -> Option<u64> {
    rustix::process::getrlimit(rustix::process::Resource::Nofile).current
}

/// The default connection limit under a descriptor limit of `fds`: all but
/// [`RESERVED_FDS`] of them (at least 16 when the limit is tiny), at most
/// [`DEFAULT_MAX_CONNECTIONS_CAP`].
pub fn default_max_connections(fds: Option<u64>) -> u64 {
    match fds {
        Some(n) => n
            .saturating_sub(RESERVED_FDS)
            .clamp(16, DEFAULT_MAX_CONNECTIONS_CAP),
        None => DEFAULT_MAX_CONNECTIONS_CAP,
    }
}

/// Pending connections the kernel queues for the accept loop (capped by
/// the system's `net.core.somaxconn`). Tokio's default is 1,024: a burst of
/// more new connections than that (thousands of clients reconnecting at
/// once) would have further handshakes dropped, and each dropped client
/// waits a whole second for its SYN to be retried.
pub const LISTEN_BACKLOG: u32 = 4096;

/// A listener on `addr` with [`LISTEN_BACKLOG`] (and `SO_REUSEADDR`, as
/// tokio's `TcpListener::bind` sets it).
pub fn bind(addr: std::net::SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// Serves `app` on `listener` under `limits` until `shutdown` turns true;
/// then stops accepting, lets every connection finish its request in
/// flight (closing idle ones at once) and returns once they are closed or
/// after `drain` at most.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: HttpLimits,
    mut shutdown: watch::Receiver<bool>,
    drain: Duration,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .max_header_size(MAX_HEADER_BYTES)
        .max_headers(MAX_HEADER_COUNT)
        .max_buf_size(MAX_HEADER_BYTES.max(8192) * 2);
    let builder = Arc::new(builder);
    loop {
        let permit = tokio::select! {
            p = slots.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
            _ = stopped(&mut shutdown) => break,
        };
        let (stream, peer) = tokio::select! {
            a = listener.accept() => match a {
                Ok(a) => a,
                Err(e) => {
                    // Out of descriptors or a connection reset before it was
                    // accepted: wait a little rather than spin.
                    tracing::warn!(error = %e, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stopped(&mut shutdown) => break,
        };
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY");
        }
        let (app, builder, shutdown) = (app.clone(), builder.clone(), shutdown.clone());
        tokio::spawn(async move {
            connection(stream, app, &builder, limits, shutdown).await;
            tracing::trace!(%peer, "connection closed");
            drop(permit);
        });
    }
    drop(listener);
    // Every connection holds a slot until it closes: all slots back means
    // all connections closed.
    let all = u32::try_from(limits.max_connections).unwrap_or(u32::MAX);
    if tokio::time::timeout(drain, slots.acquire_many(all))
        .await
        .is_err()
    {
        tracing::warn!(
            "connections still open {}s after shutdown; closing them",
            drain.as_secs()
        );
    }
}

/// Resolves once `rx` says stop (or its sender is gone).
async fn stopped(rx: &mut watch::Receiver<bool>) {
    // The borrowed value is dropped here: it must not live across an await.
    let _ = rx.wait_for(|s| *s).await.map(|_| ());
}

/// Why the watchdog closed a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expired {
    HeaderRead,
    Idle,
}

/// Serves one connection until it ends, its watchdog expires, or shutdown.
async fn connection(
    stream: TcpStream,
    app: Router,
    builder: &hyper::server::conn::http1::Builder,
    limits: HttpLimits,
    mut shutdown: watch::Receiver<bool>,
) {
    let track = Arc::new(Track::new());
    let io = TokioIo::new(Tracked {
        inner: stream,
        track: track.clone(),
        replacement: None,
    });
    let svc_track = track.clone();
    let svc = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
        let guard = InFlight::enter(svc_track.clone());
        let app = app.clone();
        async move {
            let res = app.oneshot(req.map(axum::body::Body::new)).await;
            drop(guard);
            res
        }
    });
    let conn = builder.serve_connection(io, svc);
    tokio::pin!(conn);
    let mut closing = false;
    loop {
        tokio::select! {
            res = conn.as_mut() => {
                if let Err(e) = res {
                    tracing::debug!(error = %e, "connection ended with an error");
                }
                return;
            }
            why = track.expired(limits) => {
                tracing::debug!(reason = ?why, "closing a connection: timed out");
                return;
            }
            _ = stopped(&mut shutdown), if !closing => {
                // Ends keep-alive: an idle connection closes at once, a busy
                // one after its response.
                conn.as_mut().graceful_shutdown();
                closing = true;
            }
        }
    }
}

/// What a connection's watchdog knows of it.
#[derive(Debug)]
struct TrackState {
    /// Requests being handled.
    in_flight: usize,
    /// When the request head being read started (the connection's start,
    /// or the first byte after the last response); `None` while idle.
    head_started: Option<Instant>,
    /// The last byte read or written, or the end of the last request.
    last_activity: Instant,
}

/// Shared between a connection's IO, its service and its watchdog.
#[derive(Debug)]
struct Track {
    state: Mutex<TrackState>,
    /// Wakes the watchdog when the connection changes state (a request
    /// head starts, a request enters or leaves the handler): the deadline
    /// of the new state may be earlier than the one it sleeps toward, e.g.
    /// an idle timeout shorter than the header timeout of the first head.
    state_changed: Notify,
}

impl Track {
    fn new() -> Track {
        let now = Instant::now();
        Track {
            state: Mutex::new(TrackState {
                in_flight: 0,
                head_started: Some(now),
                last_activity: now,
            }),
            state_changed: Notify::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, TrackState> {
        // The state is a few plain fields, consistent after any panic.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn on_read(&self, n: usize) {
        if n == 0 {
            return;
        }
        let now = Instant::now();
        let mut s = self.lock();
        s.last_activity = now;
        if s.in_flight == 0 && s.head_started.is_none() {
            s.head_started = Some(now);
            drop(s);
            self.state_changed.notify_one();
        }
    }

    fn on_write(&self) {
        self.lock().last_activity = Instant::now();
    }

    /// Resolves when the connection has broken a time limit.
    async fn expired(&self, limits: HttpLimits) -> Expired {
        loop {
            let (deadline, why) = {
                let s = self.lock();
                match (s.in_flight, s.head_started) {
                    // A request is being handled: look again later.
                    (1.., _) => (
                        Instant::now() + limits.header_read_timeout.min(limits.idle_timeout),
                        None,
                    ),
                    (0, Some(t)) => (t + limits.header_read_timeout, Some(Expired::HeaderRead)),
                    (0, None) => (s.last_activity + limits.idle_timeout, Some(Expired::Idle)),
                }
            };
            tokio::select! {
                _ = tokio::time::sleep_until(deadline) => {}
                _ = self.state_changed.notified() => continue,
            }
            // Still the same state past its deadline: expired.
            let s = self.lock();
            let now = Instant::now();
            match (why, s.in_flight, s.head_started) {
                (Some(Expired::HeaderRead), 0, Some(t))
                    if now >= t + limits.header_read_timeout =>
                {
                    return Expired::HeaderRead
                }
                (Some(Expired::Idle), 0, None) if now >= s.last_activity + limits.idle_timeout => {
                    return Expired::Idle
                }
                _ => {}
            }
        }
    }
}

/// Counts a request in flight while it lives.
struct InFlight(Arc<Track>);

impl InFlight {
    fn enter(track: Arc<Track>) -> InFlight {
        {
            let mut s = track.lock();
            s.in_flight += 1;
            s.head_started = None;
        }
        track.state_changed.notify_one();
        InFlight(track)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut s = self.0.lock();
        s.in_flight = s.in_flight.saturating_sub(1);
        s.last_activity = Instant::now();
        drop(s);
        self.0.state_changed.notify_one();
    }
}

/// A TCP stream that reports its traffic to its [`Track`] and rewrites the
/// HTTP parser's own bodiless error answers as problem JSON.
struct Tracked {
    inner: TcpStream,
    track: Arc<Track>,
    /// A problem answer being written in place of the parser's, and how
    /// much of it is written.
    replacement: Option<(Vec<u8>, usize)>,
}

/// The problem JSON answer for a bodiless error response the HTTP parser
/// wrote by itself (hyper answers a malformed head 400, a too long URI 414
/// and an oversized head 431, all without a body), if `buf` is one.
fn parser_error_answer(buf: &[u8]) -> Option<Vec<u8>> {
    let head_end = buf.windows(4).position(|w| w == b"\r\n\r\n")?;
    if head_end + 4 != buf.len() {
        return None; // it has a body: not the parser's
    }
    let head = std::str::from_utf8(&buf[..head_end]).ok()?;
    let has_empty_body = head
        .lines()
        .any(|l| l.eq_ignore_ascii_case("content-length: 0"));
    let (status, detail) = match head.lines().next()? {
        "HTTP/1.1 400 Bad Request" => (400, "malformed request line or header".to_string()),
        "HTTP/1.1 414 URI Too Long" => (414, "the request target is too long".to_string()),
        "HTTP/1.1 431 Request Header Fields Too Large" => (
            431,
            format!("the request line and headers must fit in {MAX_HEADER_BYTES} bytes and at most {MAX_HEADER_COUNT} header fields"),
        ),
        _ => return None,
    };
    if !has_empty_body {
        return None;
    }
    let title = axum::http::StatusCode::from_u16(status)
        .ok()?
        .canonical_reason()
        .unwrap_or("Error");
    let body = serde_json::json!({
        "type": "about:blank",
        "title": title,
        "status": status,
        "detail": detail,
    })
    .to_string();
    Some(
        format!(
            "HTTP/1.1 {status} {title}\r\ncontent-type: application/problem+json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        )
        .into_bytes(),
    )
}

impl AsyncRead for Tracked {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let res = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = res {
            self.track.on_read(buf.filled().len() - before);
        }
        res
    }
}

impl AsyncWrite for Tracked {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.replacement.is_none() && self.track.lock().in_flight == 0 {
            if let Some(answer) = parser_error_answer(buf) {
                self.replacement = Some((answer, 0));
            }
        }
        let this = &mut *self;
        if let Some((answer, written)) = &mut this.replacement {
            while *written < answer.len() {
                let n = ready!(Pin::new(&mut this.inner).poll_write(cx, &answer[*written..]))?;
                if n == 0 {
                    return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                }
                *written += n;
                this.track.on_write();
            }
            // The parser's answer counts as written: ours replaced it.
            this.replacement = None;
            return Poll::Ready(Ok(buf.len()));
        }
        let res = Pin::new(&mut this.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(_)) = res {
            this.track.on_write();
        }
        res
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    // Not vectored: the parser then writes a response head in one buffer,
    // which `parser_error_answer` can recognise.
    fn is_write_vectored(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parser_errors_become_problem_json_and_app_answers_do_not() {
        let a = parser_error_answer(
            b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\ndate: x\r\n\r\n",
        )
        .unwrap();
        let a = String::from_utf8(a).unwrap();
        assert!(a.starts_with("HTTP/1.1 431 "), "{a}");
        assert!(a.contains("application/problem+json"), "{a}");
        assert!(a.contains("\"status\":431"), "{a}");
        // An application answer with a body is left alone.
        assert!(
            parser_error_answer(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 2\r\n\r\n{}")
                .is_none()
        );
        assert!(parser_error_answer(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n").is_none());
    }

    #[test]
    fn connection_limit_leaves_room_under_the_descriptor_limit() {
        assert_eq!(default_max_connections(Some(1024)), 1024 - RESERVED_FDS);
        assert_eq!(
            default_max_connections(Some(1_000_000)),
            DEFAULT_MAX_CONNECTIONS_CAP
        );
        assert_eq!(default_max_connections(Some(100)), 16);
        let mut l = HttpLimits::defaults();
        l.max_connections = 1000;
        assert!(l
            .validate(Some(1024))
            .unwrap_err()
            .contains("--max-connections"));
        assert!(l.validate(Some(4096)).is_ok());
        l.header_read_timeout = Duration::from_millis(10);
        assert!(l
            .validate(None)
            .unwrap_err()
            .contains("--header-read-timeout"));
    }
}
