//! The live channel (`GET /stream`): server-sent events of scaling events,
//! proposals, pool changes, budget changes and engine status, filtered by
//! the token's tenant scope and resumable with `Last-Event-ID`.
//!
//! # Where the events come from
//!
//! Every mutation the stream reports is already journaled, in order: the
//! audit log (`pool.scale`, `proposal.*`, `pool.*`, `budget.*` of tenant
//! provider budgets) and the region budget ledger, both keyed by UUIDv7
//! ids ([`fleetscale_store::Store::audit_after`]). A stream polls that
//! journal every [`POLL`] from its cursor, so it sees the writes of every
//! replica (not only its own), and an event's SSE `id` is its journal id:
//! a client that reconnects with `Last-Event-ID` is replayed exactly the
//! entries after the last one it received (at most [`MAX_REPLAY`]; beyond
//! that it gets a `reset` event and should reload its views).
//!
//! Ids are taken when a transaction starts and visible when it commits, so
//! an entry may become visible after a later id was already sent; each poll
//! therefore re-reads the last [`LOOKBACK_MS`] before its cursor and sends
//! what it had not sent yet (remembered for that window).
//!
//! # Authentication
//!
//! The usual `Authorization: Bearer` header. The dashboard reads the
//! stream with `fetch()` (which can send headers), not `EventSource`
//! (which cannot), so the long-lived token never appears in a URL.
//!
//! # Bounds
//!
//! At most [`MAX_STREAMS`] open streams per process (a 503 beyond), at most
//! [`MAX_STREAM_SECS`] per stream (the client reconnects, so a revoked token
//! stops streaming within that time), [`BATCH`] entries per read and
//! [`MAX_PAGES_PER_POLL`] reads per poll.

use std::collections::HashSet;
use std::convert::Infallible;
use std::sync::OnceLock;
use std::time::Duration;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::Stream;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, Semaphore};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use fleetscale_store::{now_ms, rfc3339, AuditEntry};

use super::audit::{engine_view, EngineView};
use super::common::ApiResult;
use super::views::{EventView, ProposalView};
use crate::auth::Principal;
use crate::error::{ApiError, ApiQuery};
use crate::AppState;

/// How often a stream reads the journal.
pub const POLL: Duration = Duration::from_millis(500);
/// How often a stream sends the engine status.
pub const ENGINE_EVERY: Duration = Duration::from_secs(5);
/// How far before its cursor each poll looks again for late commits, ms.
pub const LOOKBACK_MS: u64 = 3_000;
/// Most entries replayed after a reconnect before a `reset` is sent instead.
pub const MAX_REPLAY: usize = 1_000;
/// Journal entries read at once.
pub const BATCH: i64 = 200;
/// Most reads per poll (a burst larger than this continues on the next poll).
pub const MAX_PAGES_PER_POLL: usize = 10;
/// Most open streams per process.
pub const MAX_STREAMS: usize = 256;
/// Longest life of one stream, seconds; the client then reconnects.
pub const MAX_STREAM_SECS: u64 = 600;

/// The stream routes, relative to `/api/v1`.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(stream))
}

/// Query parameters of `GET /stream`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamQuery {
    /// Resume after this event id (as the `Last-Event-ID` header; the
    /// header wins when both are given).
    pub last_event_id: Option<String>,
}

/// What each `data:` line of the stream holds (the SSE `event:` field is
/// its `kind`). `scaling`, `proposal`, `pool` and `budget` messages carry
/// the journal id as their SSE `id`; `engine`, `hello` and `reset` carry none.
#[derive(Debug, Serialize, ToSchema)]
pub struct StreamMessage {
    /// `hello` (first message), `scaling`, `proposal`, `pool`, `budget`,
    /// `engine`, or `reset` (more was missed than can be replayed: reload).
    pub kind: String,
    /// The journal id (UUIDv7), for journaled kinds.
    pub id: Option<String>,
    /// The journaled action, e.g. `pool.scale`, `proposal.approve`, `budget.spend`.
    pub action: Option<String>,
    /// The tenant concerned, when there is one.
    pub tenant_id: Option<String>,
    /// The id of the object concerned (pool, proposal, ledger entry).
    pub object_id: Option<String>,
    /// Who did it.
    pub actor: Option<String>,
    /// When (RFC 3339).
    pub at: String,
    /// The scaling event, for `scaling`.
    pub event: Option<EventView>,
    /// The proposal as it is now, for `proposal`.
    pub proposal: Option<ProposalView>,
    /// The engine status, for `engine` and `hello`.
    pub engine: Option<EngineView>,
    /// The journal entry's details, for `pool` and `budget`.
    #[schema(value_type = Object)]
    pub detail: Option<serde_json::Value>,
}

impl StreamMessage {
    fn bare(kind: &str) -> StreamMessage {
        StreamMessage {
            kind: kind.into(),
            id: None,
            action: None,
            tenant_id: None,
            object_id: None,
            actor: None,
            at: rfc3339(now_ms()),
            event: None,
            proposal: None,
            engine: None,
            detail: None,
        }
    }
}

/// Live changes as server-sent events.
///
/// Messages: `hello` at once (with the engine status), then `scaling`,
/// `proposal`, `pool` and `budget` messages as they are journaled (ids in
/// journal order; resume with `Last-Event-ID`), `engine` every 5 s and
/// `reset` when a resume missed more than 1,000 entries. A tenant token
/// receives only its tenant's changes. The stream ends after 10 minutes;
/// reconnect with the last id.
#[utoipa::path(get, path = "/stream", tag = "stream",
    params(
        ("Last-Event-ID" = Option<String>, Header, description = "Resume after this event id"),
        ("last_event_id" = Option<String>, Query, description = "Resume after this event id (when the header cannot be set)")
    ),
    responses(
        (status = 200, description = "A `text/event-stream` of messages.", content_type = "text/event-stream", body = StreamMessage),
        (status = 401), (status = 422),
        (status = 503, description = "Too many open streams")
    )
)]
async fn stream(
    State(s): State<AppState>,
    who: Principal,
    headers: HeaderMap,
    ApiQuery(q): ApiQuery<StreamQuery>,
) -> ApiResult<Sse<impl Stream<Item = Result<Event, Infallible>>>> {
    let header = headers
        .get("last-event-id")
        .map(|v| {
            v.to_str()
                .map(str::to_string)
                .map_err(|_| ApiError::field("Last-Event-ID", "must be an event id"))
        })
        .transpose()?;
    let resume = match header.or(q.last_event_id).filter(|v| !v.is_empty()) {
        Some(id) if id_ms(&id).is_some() => Some(id),
        Some(_) => {
            return Err(ApiError::field(
                "Last-Event-ID",
                "must be an event id of this stream",
            ))
        }
        None => None,
    };
    let permit = streams()
        .clone()
        .try_acquire_owned()
        .map_err(|_| ApiError::Unavailable("too many open streams".into()))?;
    let (tx, mut rx) = mpsc::channel::<Event>(64);
    tokio::spawn(async move {
        let _permit = permit;
        let _ = tokio::time::timeout(
            Duration::from_secs(MAX_STREAM_SECS),
            pump(s, who, resume, tx),
        )
        .await;
    });
    let out = futures::stream::poll_fn(move |cx| rx.poll_recv(cx).map(|e| e.map(Ok)));
    Ok(Sse::new(out).keep_alive(KeepAlive::default()))
}

fn streams() -> &'static std::sync::Arc<Semaphore> {
    static S: OnceLock<std::sync::Arc<Semaphore>> = OnceLock::new();
    S.get_or_init(|| std::sync::Arc::new(Semaphore::new(MAX_STREAMS)))
}

/// The Unix ms of a UUIDv7 id (its first 48 bits), `None` if `id` is not a
/// lowercase hyphenated UUID.
pub fn id_ms(id: &str) -> Option<u64> {
    let b = id.as_bytes();
    let shape = b.len() == 36
        && b.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_digit() || (b'a'..=b'f').contains(c),
        });
    if !shape {
        return None;
    }
    let hi = u64::from_str_radix(&id[0..8], 16).ok()?;
    let lo = u64::from_str_radix(&id[9..13], 16).ok()?;
    Some((hi << 16) | lo)
}

/// The smallest string every UUIDv7 id of Unix ms `ms` or later sorts after
/// (or equals as a prefix).
pub fn id_floor(ms: u64) -> String {
    format!("{:08x}-{:04x}", ms >> 16, ms & 0xffff)
}

/// What a stream has sent: its cursor, and the ids sent within the
/// look-back window (so a late commit is sent once).
struct Cursor {
    /// Nothing at or before this id is ever sent (where the stream started).
    start: String,
    /// The newest id sent (or `start`).
    last: String,
    /// Ids sent that are newer than the look-back floor.
    sent: HashSet<String>,
}

impl Cursor {
    /// Where the next read starts: `LOOKBACK_MS` before the newest id sent,
    /// never before the start.
    fn read_from(&self) -> String {
        let floor = id_ms(&self.last)
            .map(|ms| id_floor(ms.saturating_sub(LOOKBACK_MS)))
            .unwrap_or_default();
        let from = floor.min(self.last.clone());
        from.max(self.start.clone())
    }

    fn forget_old(&mut self) {
        let floor = id_ms(&self.last)
            .map(|ms| id_floor(ms.saturating_sub(LOOKBACK_MS)))
            .unwrap_or_default();
        self.sent.retain(|id| *id >= floor);
    }
}

async fn pump(s: AppState, who: Principal, resume: Option<String>, tx: mpsc::Sender<Event>) {
    let tenant = who.tenant_id.clone();
    let mut hello = StreamMessage::bare("hello");
    hello.engine = engine_view(&s).await.ok();
    if tx.send(sse(&hello, None)).await.is_err() {
        return;
    }
    let start = match resume {
        Some(id) => {
            // Replay what was missed, unless it is too much to replay.
            match s
                .engine
                .store
                .audit_after(tenant.as_deref(), &id, MAX_REPLAY as i64 + 1)
                .await
            {
                Ok(missed) if missed.len() > MAX_REPLAY => {
                    if tx
                        .send(sse(&StreamMessage::bare("reset"), None))
                        .await
                        .is_err()
                    {
                        return;
                    }
                    id_floor(now_ms().max(0) as u64)
                }
                _ => id,
            }
        }
        None => id_floor(now_ms().max(0) as u64),
    };
    let mut cur = Cursor {
        last: start.clone(),
        start,
        sent: HashSet::new(),
    };
    let mut poll = tokio::time::interval(POLL);
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut engine = tokio::time::interval(ENGINE_EVERY);
    engine.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    engine.tick().await; // the hello carried it
    loop {
        tokio::select! {
            _ = poll.tick() => {
                if !drain(&s, tenant.as_deref(), &mut cur, &tx).await {
                    return;
                }
            }
            _ = engine.tick() => {
                let mut m = StreamMessage::bare("engine");
                match engine_view(&s).await {
                    Ok(v) => m.engine = Some(v),
                    Err(_) => continue,
                }
                if tx.send(sse(&m, None)).await.is_err() {
                    return;
                }
            }
            _ = tx.closed() => return,
        }
    }
}

/// Sends every journal entry after the cursor that was not sent yet;
/// false once the client has gone.
async fn drain(
    s: &AppState,
    tenant: Option<&str>,
    cur: &mut Cursor,
    tx: &mpsc::Sender<Event>,
) -> bool {
    let mut from = cur.read_from();
    for _ in 0..MAX_PAGES_PER_POLL {
        let entries = match s.engine.store.audit_after(tenant, &from, BATCH).await {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!(error = %e, "stream: reading the journal failed");
                return true;
            }
        };
        let full = entries.len() as i64 == BATCH;
        for entry in entries {
            from = entry.id.clone();
            if cur.sent.contains(&entry.id) {
                continue;
            }
            if let Some(m) = message(s, entry).await {
                let id = m.id.clone().unwrap_or_default();
                if tx.send(sse(&m, Some(&id))).await.is_err() {
                    return false;
                }
            }
            if from > cur.last {
                cur.last = from.clone();
            }
            cur.sent.insert(from.clone());
        }
        if !full {
            break;
        }
    }
    cur.forget_old();
    true
}

/// The message of one journal entry, `None` for entries the stream does
/// not carry (tenants, regions, tokens, routing policies).
async fn message(s: &AppState, e: AuditEntry) -> Option<StreamMessage> {
    let kind = match e.action.as_str() {
        "pool.scale" => "scaling",
        a if a.starts_with("proposal.") => "proposal",
        a if a.starts_with("pool.") => "pool",
        a if a.starts_with("budget.") => "budget",
        _ => return None,
    };
    let mut m = StreamMessage::bare(kind);
    m.at = rfc3339(e.created_at_ms);
    m.id = Some(e.id);
    m.action = Some(e.action);
    m.tenant_id = e.tenant_id;
    m.actor = Some(e.actor);
    match kind {
        "scaling" => {
            let event_id = e.detail.get("event_id").and_then(|v| v.as_str())?;
            m.event = s
                .engine
                .store
                .get_event(event_id)
                .await
                .ok()
                .map(Into::into);
            m.object_id = Some(e.object_id);
        }
        "proposal" => {
            m.proposal = s
                .engine
                .store
                .get_proposal(&e.object_id)
                .await
                .ok()
                .map(Into::into);
            m.object_id = Some(e.object_id);
        }
        _ => {
            m.object_id = Some(e.object_id);
            m.detail = Some(e.detail);
        }
    }
    Some(m)
}

fn sse(m: &StreamMessage, id: Option<&str>) -> Event {
    let mut ev = Event::default()
        .event(m.kind.clone())
        .data(serde_json::to_string(m).unwrap_or_else(|_| "{}".into()));
    if let Some(id) = id {
        ev = ev.id(id);
    }
    ev
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_carry_their_time_and_floors_sort_before_them() {
        let id = uuid::Uuid::now_v7().to_string();
        let ms = id_ms(&id).expect("a v7 id");
        let now = now_ms() as u64;
        assert!(ms <= now && now - ms < 5_000, "{ms} vs {now}");
        assert!(id_floor(ms) <= id);
        assert!(id_floor(ms + 1) > id);
        assert!(id_floor(ms.saturating_sub(1)) < id);
        assert_eq!(id_ms("not-an-id"), None);
        assert_eq!(id_ms(&id.to_uppercase()), None);
    }

    #[test]
    fn a_cursor_reads_back_the_lookback_but_never_before_its_start() {
        let start = id_floor(1_000_000);
        let mut c = Cursor {
            start: start.clone(),
            last: start.clone(),
            sent: HashSet::new(),
        };
        assert_eq!(c.read_from(), start);
        c.last = format!("{}-7000-8000-000000000000", id_floor(1_010_000));
        assert_eq!(c.read_from(), id_floor(1_010_000 - LOOKBACK_MS));
        c.sent
            .insert(format!("{}-7000-8000-000000000000", id_floor(1_001_000)));
        c.sent.insert(c.last.clone());
        c.forget_old();
        assert_eq!(
            c.sent.len(),
            1,
            "ids older than the look-back are forgotten"
        );
    }
}
