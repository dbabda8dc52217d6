//! The HTTP listener under hostile clients, over real sockets: connections
//! that send a partial request head are closed at the header read timeout
//! while `/healthz` keeps answering; idle keep-alive connections are closed;
//! the connection limit holds; an oversized head is a 431 problem.

mod support;

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::Instant;

use fleetscale_server::conn::{self, HttpLimits};
use fleetscale_server::{router, AppState};
use fleetscale_store::Store;

/// A server on an ephemeral port with `limits`; dropping the sender stops it.
async fn start(limits: HttpLimits) -> (std::net::SocketAddr, watch::Sender<bool>, support::App) {
    let dir = support::fresh_dir();
    let store = Store::open_sqlite(&dir).await.unwrap();
    let mut state = AppState::new(store);
    state.body_read_timeout = limits.body_read_timeout;
    let app = support::App {
        state: state.clone(),
        dir,
    };
    let listener = conn::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = watch::channel(false);
    tokio::spawn(conn::serve(
        listener,
        router(state),
        limits,
        rx,
        Duration::from_secs(2),
    ));
    (addr, tx, app)
}

/// Like [`start`], but on a runtime of its own (two worker threads on a
/// thread of its own), so that the test's own 2,000 client tasks cannot
/// delay the server's answers through a shared scheduler: what the health
/// poller measures is the server. Dropping the sender stops it.
fn start_isolated(limits: HttpLimits) -> (std::net::SocketAddr, watch::Sender<bool>) {
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let (addr, tx, _app) = start(limits).await;
            let mut stopped = tx.subscribe();
            addr_tx.send((addr, tx)).unwrap();
            // Runs until the test drops its sender.
            while stopped.changed().await.is_ok() {}
        });
    });
    addr_rx.recv().unwrap()
}

/// Raises this process's open-file soft limit to its hard limit, which must
/// hold `need` descriptors.
fn raise_fd_limit(need: u64) {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let mut l = getrlimit(Resource::Nofile);
    l.current = l.maximum;
    setrlimit(Resource::Nofile, l).expect("raise RLIMIT_NOFILE to its hard limit");
    let now = getrlimit(Resource::Nofile).current;
    assert!(
        now.is_none_or(|n| n >= need),
        "this test needs {need} open files; the hard limit is {now:?}"
    );
}

/// `GET /healthz` on a fresh connection: the status line and how long the
/// whole answer took.
async fn healthz(addr: std::net::SocketAddr) -> (String, Duration) {
    let t = Instant::now();
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.unwrap();
    let text = String::from_utf8_lossy(&out).to_string();
    (text.lines().next().unwrap_or("").to_string(), t.elapsed())
}

/// How long after `opened` the server closed `s` (a read of 0 bytes or an
/// error), writing one more header byte every 500 ms meanwhile; gives up
/// (answering how long it waited) after `give_up`.
async fn until_closed(mut s: TcpStream, opened: Instant, give_up: Duration) -> Duration {
    let mut buf = [0u8; 1024];
    loop {
        if opened.elapsed() > give_up {
            return opened.elapsed();
        }
        tokio::select! {
            r = s.read(&mut buf) => match r {
                Ok(0) | Err(_) => return opened.elapsed(),
                Ok(_) => {}
            },
            _ = tokio::time::sleep(Duration::from_millis(500)) => {
                if s.write_all(b"a").await.is_err() {
                    return opened.elapsed();
                }
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partial_headers_are_closed_at_the_header_timeout_and_healthz_keeps_answering() {
    const SLOW: usize = 2_000;
    raise_fd_limit(2 * SLOW as u64 + 500);
    let header_timeout = Duration::from_secs(3);
    let limits = HttpLimits {
        header_read_timeout: header_timeout,
        body_read_timeout: Duration::from_secs(3),
        idle_timeout: Duration::from_secs(3),
        max_connections: SLOW + 200,
    };
    let (addr, _stop) = start_isolated(limits);

    // Health is polled on fresh connections from before the slow clients
    // arrive until the last of them is closed, from a thread and runtime of
    // its own (not queued behind the slow clients' tasks).
    let (done_tx, done_rx) = watch::channel(false);
    let poller = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let mut worst = Duration::ZERO;
            let mut polls = 0;
            while !*done_rx.borrow() {
                let (status, took) = healthz(addr).await;
                assert_eq!(status, "HTTP/1.1 200 OK", "after {polls} polls");
                worst = worst.max(took);
                polls += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            (worst, polls)
        })
    });

    // Each slow client opens a connection, sends a partial head and then
    // one byte every 500 ms, never finishing it.
    let gate = std::sync::Arc::new(tokio::sync::Semaphore::new(200));
    let mut slow = Vec::with_capacity(SLOW);
    for _ in 0..SLOW {
        let gate = gate.clone();
        slow.push(tokio::spawn(async move {
            let permit = gate.acquire_owned().await.unwrap();
            let mut s = TcpStream::connect(addr).await.unwrap();
            let opened = Instant::now();
            s.write_all(b"GET /api/v1/tenants HTTP/1.1\r\nHost: t\r\nX-Slow: ")
                .await
                .unwrap();
            drop(permit);
            until_closed(s, opened, header_timeout + Duration::from_secs(6)).await
        }));
    }
    let mut closed_after = Vec::with_capacity(SLOW);
    for h in slow {
        closed_after.push(h.await.unwrap());
    }
    done_tx.send(true).unwrap();
    let (worst, polls) = poller.join().unwrap();

    eprintln!("healthz worst {worst:?} over {polls} polls");
    assert!(polls >= 10, "healthz polled only {polls} times");
    assert!(
        worst < Duration::from_secs(1),
        "healthz took {worst:?} under {SLOW} slow connections"
    );
    let earliest = closed_after.iter().min().unwrap();
    let latest = closed_after.iter().max().unwrap();
    // Closed by the header timeout: not before it, and soon after it (the
    // margin is for a loaded test machine, not for the server).
    assert!(
        *earliest >= header_timeout - Duration::from_millis(200),
        "a slow connection was closed after {earliest:?}, before the {header_timeout:?} timeout"
    );
    assert!(
        *latest <= header_timeout + Duration::from_secs(2),
        "a slow connection was still open {latest:?} after it opened (timeout {header_timeout:?})"
    );
}

#[tokio::test]
async fn idle_keep_alive_connections_are_closed() {
    let limits = HttpLimits {
        header_read_timeout: Duration::from_secs(10),
        body_read_timeout: Duration::from_secs(10),
        idle_timeout: Duration::from_millis(800),
        max_connections: 16,
    };
    let (addr, _stop, _app) = start(limits).await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 4096];
    let n = s.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200 OK"));
    let answered = Instant::now();
    // Kept open for keep-alive, then closed by the idle timeout, well
    // before the header read timeout.
    let n = tokio::time::timeout(Duration::from_secs(8), s.read(&mut buf))
        .await
        .expect("the idle connection was not closed")
        .unwrap_or(0);
    assert_eq!(n, 0);
    let idle = answered.elapsed();
    assert!(
        idle >= Duration::from_millis(600) && idle < Duration::from_secs(8),
        "{idle:?}"
    );
}

#[tokio::test]
async fn the_connection_limit_makes_further_clients_wait() {
    let limits = HttpLimits {
        header_read_timeout: Duration::from_millis(1500),
        body_read_timeout: Duration::from_secs(10),
        idle_timeout: Duration::from_millis(1500),
        max_connections: 2,
    };
    let (addr, _stop, _app) = start(limits).await;
    let silent: Vec<TcpStream> = vec![
        TcpStream::connect(addr).await.unwrap(),
        TcpStream::connect(addr).await.unwrap(),
    ];
    // Both slots are held by silent clients: a third is answered only once
    // the header timeout has freed one.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (status, took) = healthz(addr).await;
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert!(
        took >= Duration::from_millis(1000),
        "answered after {took:?}"
    );
    drop(silent);
}

#[tokio::test]
async fn an_oversized_or_malformed_head_is_a_problem() {
    let (addr, _stop, _app) = start(HttpLimits::defaults()).await;
    for (request, status) in [
        (
            format!(
                "GET /healthz HTTP/1.1\r\nHost: t\r\nX-Big: {}\r\n\r\n",
                "a".repeat(conn::MAX_HEADER_BYTES + 10)
            ),
            431,
        ),
        (
            format!(
                "GET /healthz HTTP/1.1\r\nHost: t\r\n{}\r\n",
                (0..conn::MAX_HEADER_COUNT + 5)
                    .map(|i| format!("X-H{i}: v\r\n"))
                    .collect::<String>()
            ),
            431,
        ),
        ("GET /healthz HTTP/1.1\r\nHost t\r\n\r\n".to_string(), 400),
    ] {
        let mut s = TcpStream::connect(addr).await.unwrap();
        // The server may answer and close before reading everything.
        let _ = s.write_all(request.as_bytes()).await;
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out).await;
        let text = String::from_utf8_lossy(&out);
        let (head, body) = text.split_once("\r\n\r\n").expect("a response");
        assert!(head.starts_with(&format!("HTTP/1.1 {status} ")), "{head}");
        assert!(
            head.to_ascii_lowercase()
                .contains("content-type: application/problem+json"),
            "{head}"
        );
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(v["status"], status, "{body}");
        assert!(
            v["detail"].as_str().is_some_and(|d| !d.is_empty()),
            "{body}"
        );
    }
}
