//! Helpers shared by the aggregates: audit entries, ids, errors, JSON columns and pages.

use sqlx::any::AnyRow;

use crate::{Listed, Result, StoreError};

/// Writes the audit entry of a mutation inside its transaction `tx`.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn audit(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    actor: &str,
    action: &str,
    tenant_id: Option<&str>,
    object_type: &str,
    object_id: &str,
    detail: serde_json::Value,
    now_ms: i64,
) -> Result<()> {
    sqlx::query("INSERT INTO audit_log (id, actor, action, tenant_id, object_type, object_id, detail, created_at_ms) VALUES ($1,$2,$3,$4,$5,$6,$7,$8)")
        .bind(new_id())
        .bind(actor)
        .bind(action)
        .bind(tenant_id)
        .bind(object_type)
        .bind(object_id)
        .bind(detail.to_string())
        .bind(now_ms)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// A new object id: a UUIDv7, so ids sort by creation time.
pub(crate) fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// [`StoreError::NotFound`] of `what`.
pub(crate) fn not_found(what: &str) -> StoreError {
    StoreError::NotFound {
        what: what.to_string(),
    }
}

/// `e` as a conflict described by `what` when it is one, else as itself.
pub(crate) fn conflict_as(e: sqlx::Error, what: String) -> StoreError {
    match StoreError::from(e) {
        StoreError::Conflict { .. } => StoreError::Conflict { what },
        other => other,
    }
}

/// `v` as a JSON column.
pub(crate) fn to_json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "{}".into())
}

/// A text column naming a variant of `T` (a mode, a status, a trigger
/// source): an unknown value is [`StoreError::Corrupt`] naming the column,
/// never a silent default.
pub(crate) fn parse_text<T>(r: &AnyRow, column: &str) -> Result<T>
where
    T: std::str::FromStr<Err = fleetscale_core::UnknownValue>,
{
    use sqlx::Row;
    let s: String = r.try_get(column)?;
    s.parse()
        .map_err(|e| StoreError::Corrupt(format!("column {column}: {e}")))
}

/// A JSON column's value.
pub(crate) fn parse_json(s: &str) -> Result<serde_json::Value> {
    serde_json::from_str(s).map_err(|e| StoreError::Corrupt(format!("bad JSON column: {e}")))
}

/// A page of `rows` fetched as up to `limit + 1`, decoded by `decode`.
pub(crate) fn paginate<T>(
    rows: Vec<AnyRow>,
    limit: i64,
    decode: fn(&AnyRow) -> Result<T>,
    key: fn(&T) -> String,
) -> Result<Listed<T>> {
    let more = rows.len() as i64 > limit;
    let items: Vec<T> = rows
        .iter()
        .take(limit as usize)
        .map(decode)
        .collect::<Result<_>>()?;
    Ok(listed_with(items, more, key))
}

/// A page of `items` fetched as up to `limit + 1`, in list order: the
/// extra item only says that there is more.
pub(crate) fn listed<T>(mut items: Vec<T>, limit: i64, key: fn(&T) -> String) -> Listed<T> {
    let more = items.len() as i64 > limit;
    items.truncate(limit as usize);
    listed_with(items, more, key)
}

/// A page of `items`, whose cursor is the last item's key when there is more.
pub(crate) fn listed_with<T>(items: Vec<T>, more: bool, key: fn(&T) -> String) -> Listed<T> {
    let next_cursor = if more { items.last().map(key) } else { None };
    Listed { items, next_cursor }
}

/// [`StoreError::Corrupt`]: `what` could not be read back, because of `e`.
pub(crate) fn corrupt(what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("{what}: {e}"))
}

/// A JSON column `s` (described by `what`) decoded, or [`corrupt`].
pub(crate) fn decode<T: serde::de::DeserializeOwned>(what: &str, s: &str) -> Result<T> {
    serde_json::from_str(s).map_err(|e| corrupt(what, e))
}
