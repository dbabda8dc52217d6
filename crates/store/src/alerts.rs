//! Alerts the region monitor raised, and whether the webhook took them.

use sqlx::any::AnyRow;
use sqlx::Row;

use crate::sql::{new_id, paginate, parse_json, to_json};
use crate::{Listed, Page, Result, Store};

/// One alert.
#[derive(Debug, Clone, PartialEq)]
pub struct Alert {
    /// Id (UUIDv7); also the webhook's idempotency key.
    pub id: String,
    /// `critical` (the monitor raises nothing lower).
    pub level: String,
    /// The conflict type (`frozen`, `low_capacity`, ...) or `global_risk`.
    pub kind: String,
    /// The region concerned, if one.
    pub region: Option<String>,
    /// In words.
    pub message: String,
    /// The figures behind it.
    pub detail: serde_json::Value,
    /// `none` (no webhook), `delivered` or `failed`.
    pub delivery: String,
    /// Why the delivery failed.
    pub delivery_error: Option<String>,
    /// When it was raised, Unix ms.
    pub created_at_ms: i64,
}

/// The columns [`alert_row`] decodes.
const ALERT_COLS: &str =
    "id, level, kind, region, message, detail, delivery, delivery_error, created_at_ms";

impl Store {
    /// Records an alert (its delivery still `none`) and returns it.
    pub async fn insert_alert(
        &self,
        level: &str,
        kind: &str,
        region: Option<&str>,
        message: &str,
        detail: &serde_json::Value,
        now_ms: i64,
    ) -> Result<Alert> {
        let a = Alert {
            id: new_id(),
            level: level.into(),
            kind: kind.into(),
            region: region.map(String::from),
            message: message.into(),
            detail: detail.clone(),
            delivery: "none".into(),
            delivery_error: None,
            created_at_ms: now_ms,
        };
        sqlx::query(&format!(
            "INSERT INTO alerts ({ALERT_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
        ))
        .bind(&a.id)
        .bind(&a.level)
        .bind(&a.kind)
        .bind(&a.region)
        .bind(&a.message)
        .bind(to_json(&a.detail))
        .bind(&a.delivery)
        .bind(&a.delivery_error)
        .bind(a.created_at_ms)
        .execute(&self.pool)
        .await?;
        Ok(a)
    }

    /// Records how the webhook took an alert.
    pub async fn record_alert_delivery(
        &self,
        id: &str,
        delivered: bool,
        error: Option<&str>,
    ) -> Result<()> {
        sqlx::query("UPDATE alerts SET delivery = $2, delivery_error = $3 WHERE id = $1")
            .bind(id)
            .bind(if delivered { "delivered" } else { "failed" })
            .bind(error)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// True when an alert of `kind` for `region` was raised at or after
    /// `since_ms` (the monitor raises one per condition per window).
    pub async fn alerted_since(
        &self,
        kind: &str,
        region: Option<&str>,
        since_ms: i64,
    ) -> Result<bool> {
        let row = sqlx::query(
            "SELECT id FROM alerts WHERE kind = $1 AND COALESCE(region, '') = $2 AND created_at_ms >= $3 LIMIT 1",
        )
        .bind(kind)
        .bind(region.unwrap_or(""))
        .bind(since_ms)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.is_some())
    }

    /// Alerts, newest first, paged.
    pub async fn list_alerts(&self, page: &Page) -> Result<Listed<Alert>> {
        let rows = sqlx::query(&format!(
            "SELECT {ALERT_COLS} FROM alerts WHERE ($1 = '' OR id < $1) ORDER BY id DESC LIMIT $2"
        ))
        .bind(page.cursor.clone().unwrap_or_default())
        .bind(page.limit() + 1)
        .fetch_all(&self.pool)
        .await?;
        paginate(rows, page.limit(), alert_row, |a| a.id.clone())
    }
}

fn alert_row(r: &AnyRow) -> Result<Alert> {
    let detail: String = r.try_get("detail")?;
    Ok(Alert {
        id: r.try_get("id")?,
        level: r.try_get("level")?,
        kind: r.try_get("kind")?,
        region: r.try_get("region")?,
        message: r.try_get("message")?,
        detail: parse_json(&detail)?,
        delivery: r.try_get("delivery")?,
        delivery_error: r.try_get("delivery_error")?,
        created_at_ms: r.try_get("created_at_ms")?,
    })
}
