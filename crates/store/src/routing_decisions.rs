//! Recorded routing decisions: the input that replays each (its shared
//! context stored once per content, migration 0015) and the compact
//! decision, written in group-committed batches and read back exactly.

use std::collections::HashMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sqlx::any::AnyRow;
use sqlx::Row;

use fleetscale_core::region::compliance::RegionPolicy;
use fleetscale_core::region::routing::{
    Candidate, ExcludedBy, RegionView, RouteDecision, RouteInput, RoutingPolicy,
};

use std::fmt::Write as _;

use crate::sql::{corrupt, decode, listed_with, not_found, to_json};
use crate::{Backend, Listed, Page, Result, Store};

/// The heavy, shared part of a route input, stored once per content
/// (migration 0015, table `routing_contexts`): the tenant's policies and
/// every region as the route read it. Many decisions read the same context
/// (it changes when the routing view does), so it is printed, hashed and
/// stored once, and each decision names it by hash.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteContext {
    /// The tenant's region policy (the default when never set).
    pub region_policy: RegionPolicy,
    /// The tenant's routing policy (the default when never set).
    pub routing_policy: RoutingPolicy,
    /// Every region, as routing read it for the tenant and agent type.
    pub regions: Vec<RegionView>,
}

/// The request's own part of a route input (everything but the context).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteRequest {
    /// Tenant asking.
    pub tenant_id: String,
    /// Workload type.
    pub workload_type: String,
    /// Agent type.
    pub agent_type: String,
    /// Preferred region names, first preferred first.
    #[serde(default)]
    pub preferred_regions: Vec<String>,
    /// Client country code.
    #[serde(default)]
    pub client_country: Option<String>,
    /// Request id (the decision's id).
    pub request_id: String,
    /// Decision time (Unix ms).
    pub now_ms: i64,
}

/// A [`RouteContext`] as it is recorded: its JSON text, the SHA-256 (hex)
/// of that text, and the value parsed back from the text (see
/// [`RecordedInput`] for why decisions use the parsed-back value).
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedContext {
    hash: String,
    json: String,
    context: RouteContext,
}

impl RecordedContext {
    /// Prints `context`, hashes the text and parses it back.
    pub fn new(context: &RouteContext) -> Result<RecordedContext> {
        let json = serde_json::to_string(context).map_err(|e| corrupt("route context", e))?;
        RecordedContext::parse(json)
    }

    /// Parses a recorded text (and hashes it).
    fn parse(json: String) -> Result<RecordedContext> {
        let context = decode("column routing_contexts.input", &json)?;
        Ok(RecordedContext {
            hash: hex::encode(Sha256::digest(json.as_bytes())),
            json,
            context,
        })
    }

    /// SHA-256 of the text, lowercase hex: the key it is stored under.
    pub fn hash(&self) -> &str {
        &self.hash
    }

    /// The recorded text.
    pub fn json(&self) -> &str {
        &self.json
    }

    /// The context to decide with.
    pub fn context(&self) -> &RouteContext {
        &self.context
    }
}

/// How a recorded input's text is kept.
#[derive(Debug, Clone, PartialEq)]
enum InputText {
    /// The whole input in the decision row (rows recorded before migration
    /// 0015, and [`Store::insert_routing_decision`]).
    Whole(String),
    /// A shared context (by hash) and the request's own part.
    Split {
        context: Arc<RecordedContext>,
        request: String,
    },
}

/// A route input as it is recorded: its JSON text (whole, or a shared
/// [`RecordedContext`] and the request's own part) and the value parsed
/// back from that text.
///
/// serde_json's default float parsing is not always exact: parsing the
/// shortest text of an `f64` (a policy weight) may give its neighbour. So a
/// decision is made from the input parsed back from the text that is
/// stored, never from the value the text was printed from: a replay parses
/// the same text to the same value, bit for bit, and decides the same.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedInput {
    text: InputText,
    input: RouteInput,
}

impl RecordedInput {
    /// Prints `input` whole and parses it back.
    pub fn new(input: &RouteInput) -> Result<RecordedInput> {
        let json = serde_json::to_string(input).map_err(|e| corrupt("route input", e))?;
        RecordedInput::parse(json)
    }

    /// An input made of a recorded context (already parsed back) and
    /// `request`, which is printed and parsed back.
    pub fn split(context: Arc<RecordedContext>, request: &RouteRequest) -> Result<RecordedInput> {
        let json = serde_json::to_string(request).map_err(|e| corrupt("route request", e))?;
        RecordedInput::from_parts(context, json)
    }

    fn from_parts(context: Arc<RecordedContext>, request: String) -> Result<RecordedInput> {
        let r: RouteRequest = decode("column routing_decisions.input", &request)?;
        let c = context.context();
        let input = RouteInput {
            tenant_id: r.tenant_id,
            region_policy: c.region_policy.clone(),
            routing_policy: c.routing_policy.clone(),
            workload_type: r.workload_type,
            agent_type: r.agent_type,
            preferred_regions: r.preferred_regions,
            client_country: r.client_country,
            request_id: r.request_id,
            now_ms: r.now_ms,
            regions: c.regions.clone(),
        };
        Ok(RecordedInput {
            text: InputText::Split { context, request },
            input,
        })
    }

    /// Parses a recorded whole text.
    fn parse(json: String) -> Result<RecordedInput> {
        let input = decode("column routing_decisions.input", &json)?;
        Ok(RecordedInput {
            text: InputText::Whole(json),
            input,
        })
    }

    /// The input to decide (and replay) with.
    pub fn input(&self) -> &RouteInput {
        &self.input
    }

    /// The recorded shared context, when the input was recorded split.
    pub fn context(&self) -> Option<&Arc<RecordedContext>> {
        match &self.text {
            InputText::Whole(_) => None,
            InputText::Split { context, .. } => Some(context),
        }
    }

    /// The whole input as JSON, read from the recorded text(s): a split
    /// input is its context's fields and its request's fields in one object
    /// (the shape of a whole input).
    pub fn to_value(&self) -> Result<serde_json::Value> {
        match &self.text {
            InputText::Whole(json) => decode("column routing_decisions.input", json),
            InputText::Split { context, request } => {
                let mut v: serde_json::Map<String, serde_json::Value> =
                    decode("column routing_decisions.input", request)?;
                let c: serde_json::Map<String, serde_json::Value> =
                    decode("column routing_contexts.input", context.json())?;
                v.extend(c);
                Ok(serde_json::Value::Object(v))
            }
        }
    }

    /// The text stored in the decision row's `input` column.
    fn row_text(&self) -> &str {
        match &self.text {
            InputText::Whole(json) => json,
            InputText::Split { request, .. } => request,
        }
    }
}

/// A recorded routing decision and the input that replays it.
#[derive(Debug, Clone, PartialEq)]
pub struct RoutingRecord {
    /// Id (UUIDv7; also the input's `request_id`).
    pub id: String,
    /// Tenant routed for.
    pub tenant_id: String,
    /// Workload type.
    pub workload_type: String,
    /// Agent type.
    pub agent_type: String,
    /// The region chosen.
    pub selected_region: String,
    /// Everything the decision read, as recorded.
    pub input: RecordedInput,
    /// The decision.
    pub decision: RouteDecision,
    /// When it was made (Unix ms).
    pub created_at_ms: i64,
}

/// Filters of [`Store::list_routing_decisions`]; `None` does not filter.
#[derive(Debug, Clone, Default)]
pub struct RoutingFilter {
    /// Only this tenant.
    pub tenant_id: Option<String>,
    /// Only this workload type.
    pub workload_type: Option<String>,
    /// Only decisions that chose this region (name).
    pub selected_region: Option<String>,
    /// Only decisions made at or after this time (Unix ms).
    pub since_ms: Option<i64>,
}

impl Store {
    /// Records a routing decision durably; a repeated id is a conflict.
    pub async fn insert_routing_decision(&self, rec: &RoutingRecord) -> Result<()> {
        self.record_routing_decisions(std::slice::from_ref(rec))
            .await
    }

    /// Records routing decisions durably in one transaction (multi-row
    /// inserts): the shared context of each split input once
    /// (`INSERT .. ON CONFLICT DO NOTHING` into `routing_contexts`), then
    /// every decision row (its request part, its context's hash and a
    /// compact decision; a whole input is stored whole, as before migration
    /// 0015). All or nothing; a repeated id is a conflict and records none.
    pub async fn record_routing_decisions(&self, recs: &[RoutingRecord]) -> Result<()> {
        if recs.is_empty() {
            return Ok(());
        }
        let mut contexts: Vec<&RecordedContext> = Vec::new();
        for r in recs {
            if let Some(c) = r.input.context() {
                if !contexts.iter().any(|k| k.hash() == c.hash()) {
                    contexts.push(c);
                }
            }
        }
        let rows = recs
            .iter()
            .map(|r| Ok((r, decision_text(r)?)))
            .collect::<Result<Vec<_>>>()?;
        let b = self.backend;
        let mut tx = self.begin().await?;
        for chunk in contexts.chunks(RECORD_CHUNK) {
            let sql = values_sql(
                b,
                "INSERT INTO routing_contexts (hash, input) VALUES ",
                2,
                chunk.len(),
                " ON CONFLICT (hash) DO NOTHING",
            );
            let mut q = sqlx::query(&sql);
            for c in chunk {
                q = q.bind(c.hash()).bind(c.json());
            }
            q.execute(&mut *tx).await?;
        }
        for chunk in rows.chunks(RECORD_CHUNK) {
            let sql = values_sql(
                b,
                "INSERT INTO routing_decisions (id, tenant_id, workload_type, agent_type, selected_region, input, decision, created_at_ms, context_hash) VALUES ",
                9,
                chunk.len(),
                "",
            );
            let mut q = sqlx::query(&sql);
            for (r, decision) in chunk {
                q = q
                    .bind(&r.id)
                    .bind(&r.tenant_id)
                    .bind(&r.workload_type)
                    .bind(&r.agent_type)
                    .bind(&r.selected_region)
                    .bind(r.input.row_text())
                    .bind(decision)
                    .bind(r.created_at_ms)
                    .bind(r.input.context().map(|c| c.hash()));
            }
            q.execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Fetches a recorded routing decision.
    pub async fn get_routing_decision(&self, id: &str) -> Result<RoutingRecord> {
        let row = sqlx::query(&format!(
            "SELECT {DECISION_COLS} FROM routing_decisions d \
             LEFT JOIN routing_contexts c ON c.hash = d.context_hash WHERE d.id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?
        .ok_or_else(|| not_found("routing decision"))?;
        decision_row(&row, &mut HashMap::new())
    }

    /// Lists recorded routing decisions, newest first, keyset-paged by id.
    pub async fn list_routing_decisions(
        &self,
        filter: &RoutingFilter,
        page: &Page,
    ) -> Result<Listed<RoutingRecord>> {
        let rows = sqlx::query(&format!(
            "SELECT {DECISION_COLS} FROM routing_decisions d \
             LEFT JOIN routing_contexts c ON c.hash = d.context_hash WHERE ($1 = '' OR d.tenant_id = $1) \
             AND ($2 = '' OR d.workload_type = $2) AND ($3 = '' OR d.selected_region = $3) \
             AND d.created_at_ms >= $4 AND ($5 = '' OR d.id < $5) ORDER BY d.id DESC LIMIT $6"
        ))
        .bind(filter.tenant_id.as_deref().unwrap_or(""))
        .bind(filter.workload_type.as_deref().unwrap_or(""))
        .bind(filter.selected_region.as_deref().unwrap_or(""))
        .bind(filter.since_ms.unwrap_or(i64::MIN))
        .bind(page.cursor.clone().unwrap_or_default())
        .bind(page.limit() + 1)
        .fetch_all(&self.pool)
        .await?;
        // Rows of one page often share their context: parse each once.
        let mut contexts = HashMap::new();
        let more = rows.len() as i64 > page.limit();
        let items = rows
            .iter()
            .take(page.limit() as usize)
            .map(|r| decision_row(r, &mut contexts))
            .collect::<Result<Vec<_>>>()?;
        Ok(listed_with(items, more, |r| r.id.clone()))
    }
}

/// The columns [`decision_row`] decodes (`d`: the decision row, `c` its
/// context, if any).
const DECISION_COLS: &str = "d.id, d.tenant_id, d.workload_type, d.agent_type, d.selected_region, \
     d.input, d.decision, d.created_at_ms, d.context_hash, c.input AS context";

/// Decision rows written per statement (9 parameters each: 1,800 per
/// statement, within both backends' limits).
const RECORD_CHUNK: usize = 200;

/// `head` followed by `rows` groups of `cols` parameters and `tail`, with
/// the backend's placeholders (positional `?` on SQLite: sqlx's named
/// lookup costs more than the insert).
fn values_sql(backend: Backend, head: &str, cols: usize, rows: usize, tail: &str) -> String {
    let mut sql = String::with_capacity(head.len() + tail.len() + rows * cols * 5);
    sql.push_str(head);
    for i in 0..rows {
        sql.push_str(if i == 0 { "(" } else { ",(" });
        for j in 0..cols {
            if j > 0 {
                sql.push(',');
            }
            match backend {
                Backend::Sqlite => sql.push('?'),
                Backend::Postgres => {
                    let _ = write!(sql, "${}", i * cols + j + 1);
                }
            }
        }
        sql.push(')');
    }
    sql.push_str(tail);
    sql
}

/// A candidate in a compact decision: (compliant, why not eligible
/// (0 eligible, 1 non_compliant, 2 frozen, 3 ejected, 4
/// no_spare_capacity), ejected until (Unix ms), score). Its region is
/// implied: the candidates are the input's regions in name order.
type CompactCandidate = (u8, u8, Option<i64>, Option<Exact>);

/// An `f64` recorded as the text Rust prints for it (the shortest that
/// reads back to the same bits) and read back with Rust's exact parser:
/// serde_json's default float parsing may give a neighbour, and a recorded
/// decision reads back exactly as it was answered.
#[derive(Debug, Serialize, Deserialize)]
#[serde(transparent)]
struct Exact(String);

impl Exact {
    fn new(v: f64) -> Exact {
        Exact(v.to_string())
    }

    fn get(&self) -> Result<f64> {
        self.0
            .parse()
            .map_err(|e| corrupt("column routing_decisions.decision", e))
    }
}

/// A decision as recorded with a split input (migration 0015): everything
/// of a [`RouteDecision`] but the region names, which the input implies.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct CompactDecision {
    /// Reason.
    r: String,
    /// Score.
    s: Exact,
    /// Latency, ms.
    l: Exact,
    /// Capacity score.
    c: Exact,
    /// Policy kind.
    p: String,
    /// Candidates, in name order.
    k: Vec<CompactCandidate>,
}

/// What the `decision` column of a split row holds: a compact decision, or
/// (when its candidates were not the input's regions in name order, which
/// the core never produces) the whole decision.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum DecisionText {
    Compact(CompactDecision),
    Whole(RouteDecision),
}

/// The candidates' region names a decision over `input` lists: the input's
/// regions in name order, each once (as the core's `route` lists them).
fn candidate_names(input: &RouteInput) -> Vec<&str> {
    let mut names: Vec<&str> = input.regions.iter().map(|r| r.name.as_str()).collect();
    names.sort_unstable();
    names.dedup();
    names
}

/// The text of a record's `decision` column: compact for a split input
/// whose candidates are its regions in name order, whole otherwise.
fn decision_text(r: &RoutingRecord) -> Result<String> {
    let d = &r.decision;
    let compact = r.input.context().is_some()
        && candidate_names(r.input.input())
            .iter()
            .copied()
            .eq(d.candidates.iter().map(|c| c.region.as_str()));
    if !compact {
        return Ok(to_json(d));
    }
    let k = d
        .candidates
        .iter()
        .map(|c| {
            let (code, until) = match c.excluded_by {
                None => (0, None),
                Some(ExcludedBy::NonCompliant) => (1, None),
                Some(ExcludedBy::Frozen) => (2, None),
                Some(ExcludedBy::Ejected { until_ms }) => (3, Some(until_ms)),
                Some(ExcludedBy::NoSpareCapacity) => (4, None),
            };
            (u8::from(c.compliant), code, until, c.score.map(Exact::new))
        })
        .collect();
    serde_json::to_string(&CompactDecision {
        r: d.reason.clone(),
        s: Exact::new(d.score),
        l: Exact::new(d.latency_ms),
        c: Exact::new(d.capacity_score),
        p: d.policy.clone(),
        k,
    })
    .map_err(|e| corrupt("routing decision", e))
}

/// A compact decision back in full, for a decision that chose `selected`.
fn expand(c: CompactDecision, selected: &str, input: &RouteInput) -> Result<RouteDecision> {
    let names = candidate_names(input);
    if names.len() != c.k.len() {
        return Err(corrupt(
            "column routing_decisions.decision",
            "candidates do not match the input's regions",
        ));
    }
    let candidates = names
        .iter()
        .zip(c.k)
        .map(|(name, (compliant, code, until, score))| {
            let excluded_by = match (code, until) {
                (0, _) => None,
                (1, _) => Some(ExcludedBy::NonCompliant),
                (2, _) => Some(ExcludedBy::Frozen),
                (3, Some(until_ms)) => Some(ExcludedBy::Ejected { until_ms }),
                (4, _) => Some(ExcludedBy::NoSpareCapacity),
                (other, _) => {
                    return Err(corrupt(
                        "column routing_decisions.decision",
                        format!("unknown candidate code {other}"),
                    ))
                }
            };
            Ok(Candidate {
                region: (*name).to_string(),
                compliant: compliant != 0,
                eligible: excluded_by.is_none(),
                excluded_by,
                score: score.map(|s| s.get()).transpose()?,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(RouteDecision {
        selected_region: selected.to_string(),
        score: c.s.get()?,
        latency_ms: c.l.get()?,
        capacity_score: c.c.get()?,
        reason: c.r,
        policy: c.p,
        candidates,
    })
}

/// Decodes a decision row of either layout; `contexts` keeps the contexts
/// already parsed (by hash).
fn decision_row(
    r: &AnyRow,
    contexts: &mut HashMap<String, Arc<RecordedContext>>,
) -> Result<RoutingRecord> {
    let input: String = r.try_get("input")?;
    let decision: String = r.try_get("decision")?;
    let selected_region: String = r.try_get("selected_region")?;
    let hash: Option<String> = r.try_get("context_hash")?;
    let (input, decision) = match hash {
        None => (
            RecordedInput::parse(input)?,
            decode("column routing_decisions.decision", &decision)?,
        ),
        Some(hash) => {
            let context = match contexts.get(&hash) {
                Some(c) => c.clone(),
                None => {
                    let text: Option<String> = r.try_get("context")?;
                    let text = text.ok_or_else(|| {
                        corrupt("routing decision", format!("context {hash} is missing"))
                    })?;
                    let c = Arc::new(RecordedContext::parse(text)?);
                    contexts.insert(hash, c.clone());
                    c
                }
            };
            let input = RecordedInput::from_parts(context, input)?;
            let decision = match decode("column routing_decisions.decision", &decision)? {
                DecisionText::Compact(c) => expand(c, &selected_region, input.input())?,
                DecisionText::Whole(d) => d,
            };
            (input, decision)
        }
    };
    Ok(RoutingRecord {
        id: r.try_get("id")?,
        tenant_id: r.try_get("tenant_id")?,
        workload_type: r.try_get("workload_type")?,
        agent_type: r.try_get("agent_type")?,
        selected_region,
        input,
        decision,
        created_at_ms: r.try_get("created_at_ms")?,
    })
}
