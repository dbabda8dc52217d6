//! What the HTTP benchmarks share: the lean load generator's client (one
//! keep-alive HTTP/1.1 connection, each request written in one `write`, the
//! answer parsed with httparse, the parser hyper uses, so the load
//! generator spends its CPU on the socket, not on a client stack: hyper's
//! client connection costs a second task and a wake-up per request), the
//! HTTP ceiling run (`GET /healthz`), per-thread CPU accounting from
//! `/proc`, and the environment and summary helpers.

// Each bench uses only some of these helpers.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The `authorization` header value of the admin token the bench servers
/// run with (`support::TOKEN`).
pub const AUTH: &str = concat!("Bearer ", "e2e-admin-token");

/// The server binary: this build, or `FLEETSCALE_BENCH_BIN` (to measure an
/// older build with the same load generator, alternating runs).
pub fn bin() -> String {
    std::env::var("FLEETSCALE_BENCH_BIN")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_fleetscale").to_string())
}

/// One client: a keep-alive HTTP/1.1 connection to one server, written to
/// and read from directly. At most one request is in flight (no pipelining).
pub struct HttpClient {
    tcp: TcpStream,
    /// `host:port` of the server.
    pub authority: String,
    /// Bytes read and not yet consumed.
    buf: Vec<u8>,
}

impl HttpClient {
    /// Connects to `base` (`http://host:port`), with `TCP_NODELAY`.
    pub async fn connect(base: &str) -> HttpClient {
        let authority = base.trim_start_matches("http://").to_string();
        let tcp = TcpStream::connect(&authority).await.unwrap();
        tcp.set_nodelay(true).unwrap();
        HttpClient {
            tcp,
            authority,
            buf: Vec::with_capacity(8192),
        }
    }

    /// Sends `request` (a whole HTTP/1.1 request) and reads one whole
    /// answer: its status and body (which must have a content-length).
    pub async fn roundtrip(&mut self, request: &[u8]) -> (u16, Vec<u8>) {
        assert!(
            self.buf.is_empty(),
            "bytes the server sent after its last answer: the stream is out of step"
        );
        self.tcp.write_all(request).await.unwrap();
        loop {
            let mut headers = [httparse::EMPTY_HEADER; 16];
            let mut res = httparse::Response::new(&mut headers);
            if let httparse::Status::Complete(head) = res.parse(&self.buf).unwrap() {
                let status = res.code.unwrap();
                let len: usize = res
                    .headers
                    .iter()
                    .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                    .map(|h| std::str::from_utf8(h.value).unwrap().parse().unwrap())
                    .unwrap_or_else(|| panic!("answer {status} has no content-length"));
                while self.buf.len() < head + len {
                    self.read_more().await;
                }
                let body = self.buf[head..head + len].to_vec();
                self.buf.drain(..head + len);
                return (status, body);
            }
            self.read_more().await;
        }
    }

    async fn read_more(&mut self) {
        let n = self.tcp.read_buf(&mut self.buf).await.unwrap();
        assert!(n > 0, "the server closed the connection");
    }

    /// `POST path` with the admin token and a JSON `body`: status and body.
    pub async fn post_json(&mut self, path: &str, body: &str) -> (u16, Vec<u8>) {
        let request = format!(
            "POST {path} HTTP/1.1\r\nhost: {}\r\nauthorization: {AUTH}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
            self.authority,
            body.len()
        );
        self.roundtrip(request.as_bytes()).await
    }

    /// One `GET /healthz`: the server's HTTP path alone (no token, no JSON,
    /// no database); panics unless it answered 200.
    pub async fn ping(&mut self) {
        let request = format!("GET /healthz HTTP/1.1\r\nhost: {}\r\n\r\n", self.authority);
        let (status, _) = self.roundtrip(request.as_bytes()).await;
        assert_eq!(status, 200);
    }
}

/// The same clients against `GET /healthz` of `url`: the request rate this
/// machine's HTTP stack (client and server sharing the cores) reaches with a
/// handler that does nothing, the ceiling for any endpoint. Returns the rate.
pub async fn http_ceiling(url: &str, pid: Option<u32>, clients: usize, duration: Duration) -> f64 {
    let server = || {
        pid.map(|p| cpu_by_thread(&p.to_string()))
            .unwrap_or_default()
    };
    let mut conns = Vec::new();
    for _ in 0..clients {
        conns.push(HttpClient::connect(url).await);
    }
    let done = Arc::new(AtomicUsize::new(0));
    let (server_before, gen_before) = (server(), cpu_by_thread("self"));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for mut client in conns {
        let done = done.clone();
        tasks.push(tokio::spawn(async move {
            while started.elapsed() < duration {
                client.ping().await;
                done.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let secs = started.elapsed().as_secs_f64();
    let n = done.load(Ordering::Relaxed);
    let (server_after, gen_after) = (server(), cpu_by_thread("self"));
    let rate = n as f64 / secs;
    println!(
        "http ceiling: {n} GET /healthz in {secs:.1}s = {rate:.0} requests/s ({clients} clients, no token, no database)"
    );
    println!(
        "http ceiling: {}",
        cpu_report(
            (&server_before, &server_after),
            (&gen_before, &gen_after),
            (n, "request"),
            true
        )
    );
    rate
}

/// CPU time (ns) the threads of process `pid` ran so far, by thread name
/// (`/proc/PID/task/TID/schedstat`, whose first field is the time on CPU):
/// threads that exit in between are lost, which the servers' are not.
pub fn cpu_by_thread(pid: &str) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return out;
    };
    for t in tasks.flatten() {
        let dir = t.path();
        let name = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
        let ns = std::fs::read_to_string(dir.join("schedstat"))
            .ok()
            .and_then(|s| s.split_whitespace().next()?.parse::<u64>().ok())
            .unwrap_or(0);
        *out.entry(name.trim().to_string()).or_default() += ns;
    }
    out
}

/// The sum of several processes' [`cpu_by_thread`] readings, by thread name.
pub fn sum_threads(maps: Vec<BTreeMap<String, u64>>) -> BTreeMap<String, u64> {
    let mut total = BTreeMap::new();
    for (k, v) in maps.into_iter().flatten() {
        *total.entry(k).or_insert(0) += v;
    }
    total
}

/// CPU per operation of the server, by thread group (those over 5% of it),
/// and of this load generator between two [`cpu_by_thread`] readings; with
/// the database inside the server (`in_process`: SQLite), the rate two fully
/// busy cores would allow at that cost, a figure far less sensitive to the
/// host's other load than the rate itself. PostgreSQL's own processes are
/// not counted.
pub fn cpu_report(
    server: (&BTreeMap<String, u64>, &BTreeMap<String, u64>),
    loadgen: (&BTreeMap<String, u64>, &BTreeMap<String, u64>),
    (n, unit): (usize, &str),
    in_process: bool,
) -> String {
    let us = |ns: u64| ns as f64 / 1000.0 / n.max(1) as f64;
    let delta = |before: &BTreeMap<String, u64>, after: &BTreeMap<String, u64>| {
        after
            .iter()
            .map(|(k, v)| {
                (
                    k.clone(),
                    v.saturating_sub(before.get(k).copied().unwrap_or(0)),
                )
            })
            .collect::<Vec<_>>()
    };
    let mut threads = delta(server.0, server.1);
    threads.sort_by_key(|(_, ns)| std::cmp::Reverse(*ns));
    let total: u64 = threads.iter().map(|(_, ns)| ns).sum();
    let groups: Vec<String> = threads
        .iter()
        .filter(|(_, ns)| *ns * 20 > total)
        .map(|(k, ns)| format!("{k} {:.1}", us(*ns)))
        .collect();
    let gen: u64 = delta(loadgen.0, loadgen.1).iter().map(|(_, ns)| ns).sum();
    let ceiling = if in_process {
        format!(
            "; two busy cores at that cost: {:.0} {unit}s/s",
            2e6 / (us(total) + us(gen))
        )
    } else {
        " (PostgreSQL's processes not counted)".to_string()
    };
    format!(
        "CPU per {unit}: server {:.1} µs ({}), load generator {:.1} µs{ceiling}",
        us(total),
        groups.join(", "),
        us(gen),
    )
}

/// A positive whole number from the environment variable `name`, or
/// `default` when it is unset; any other value stops the bench with a
/// message naming the variable.
pub fn env_count(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Err(_) => default,
        Ok(v) => match v.parse::<u64>() {
            Ok(n) if n > 0 => n,
            _ => panic!("{name} must be a positive whole number, got {v:?}"),
        },
    }
}

/// `BENCH_CEILING`: whether to run the HTTP ceiling (default yes).
pub fn ceiling_enabled() -> bool {
    match std::env::var("BENCH_CEILING").as_deref() {
        Err(_) | Ok("1") => true,
        Ok("0") => false,
        Ok(v) => panic!("BENCH_CEILING must be 0 or 1, got {v:?}"),
    }
}

/// The median of `values` (sorted in place); `None` when empty.
pub fn median(values: &mut [f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    Some(if values.len().is_multiple_of(2) {
        (values[mid - 1] + values[mid]) / 2.0
    } else {
        values[mid]
    })
}

/// Prints the median and range of one configuration's runs (in `unit`s per
/// second), when there are at least two.
pub fn summary(name: &str, unit: &str, rates: &mut [f64]) {
    if rates.len() < 2 {
        return;
    }
    let m = median(rates).unwrap_or_default();
    println!(
        "{name}: median of {} runs {m:.0} {unit}/s (min {:.0}, max {:.0})",
        rates.len(),
        rates[0],
        rates[rates.len() - 1]
    );
}
