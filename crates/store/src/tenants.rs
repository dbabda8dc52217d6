//! Tenants and regions: creating, reading and listing them.

use sqlx::any::AnyRow;
use sqlx::Row;

use crate::sql::{audit, conflict_as, new_id, not_found, paginate};
use crate::{now_ms, Listed, Page, Region, Result, Store, Tenant};

impl Store {
    /// Creates a tenant; a duplicate name is a conflict.
    pub async fn create_tenant(&self, name: &str, actor: &str) -> Result<Tenant> {
        let t = Tenant {
            id: new_id(),
            name: name.to_string(),
            created_at_ms: now_ms(),
        };
        let mut tx = self.begin().await?;
        sqlx::query("INSERT INTO tenants (id, name, created_at_ms) VALUES ($1, $2, $3)")
            .bind(&t.id)
            .bind(&t.name)
            .bind(t.created_at_ms)
            .execute(&mut *tx)
            .await
            .map_err(|e| conflict_as(e, format!("tenant named {name:?} exists")))?;
        audit(
            &mut tx,
            actor,
            "tenant.create",
            Some(&t.id),
            "tenant",
            &t.id,
            serde_json::json!({"name": name}),
            t.created_at_ms,
        )
        .await?;
        tx.commit().await?;
        self.view_changed();
        Ok(t)
    }

    /// Fetches a tenant.
    pub async fn get_tenant(&self, id: &str) -> Result<Tenant> {
        let row = sqlx::query("SELECT id, name, created_at_ms FROM tenants WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| not_found("tenant"))?;
        tenant_row(&row)
    }

    /// Lists tenants by id; `only` restricts to one tenant.
    pub async fn list_tenants(&self, only: Option<&str>, page: &Page) -> Result<Listed<Tenant>> {
        let rows = sqlx::query(
            "SELECT id, name, created_at_ms FROM tenants WHERE ($1 = '' OR id = $1) AND id > $2 ORDER BY id LIMIT $3",
        )
        .bind(only.unwrap_or(""))
        .bind(page.cursor.clone().unwrap_or_default())
        .bind(page.limit() + 1)
        .fetch_all(&self.pool)
        .await?;
        paginate(rows, page.limit(), tenant_row, |t| t.id.clone())
    }

    /// Creates a region; a duplicate name is a conflict.
    pub async fn create_region(
        &self,
        name: &str,
        jurisdiction: &str,
        actor: &str,
    ) -> Result<Region> {
        let r = Region {
            id: new_id(),
            name: name.to_string(),
            jurisdiction: jurisdiction.to_string(),
            created_at_ms: now_ms(),
        };
        let mut tx = self.begin().await?;
        sqlx::query(
            "INSERT INTO regions (id, name, jurisdiction, created_at_ms) VALUES ($1, $2, $3, $4)",
        )
        .bind(&r.id)
        .bind(&r.name)
        .bind(&r.jurisdiction)
        .bind(r.created_at_ms)
        .execute(&mut *tx)
        .await
        .map_err(|e| conflict_as(e, format!("region named {name:?} exists")))?;
        audit(
            &mut tx,
            actor,
            "region.create",
            None,
            "region",
            &r.id,
            serde_json::json!({"name": name, "jurisdiction": jurisdiction}),
            r.created_at_ms,
        )
        .await?;
        tx.commit().await?;
        self.view_changed();
        Ok(r)
    }

    /// Fetches a region by id or by name.
    pub async fn get_region(&self, id_or_name: &str) -> Result<Region> {
        let row = sqlx::query(
            "SELECT id, name, jurisdiction, created_at_ms FROM regions WHERE id = $1 OR name = $1",
        )
        .bind(id_or_name)
        .fetch_optional(&self.pool)
        .await?
        .ok_or_else(|| not_found("region"))?;
        region_row(&row)
    }

    /// Lists regions by id.
    pub async fn list_regions(&self, page: &Page) -> Result<Listed<Region>> {
        let rows = sqlx::query("SELECT id, name, jurisdiction, created_at_ms FROM regions WHERE id > $1 ORDER BY id LIMIT $2")
            .bind(page.cursor.clone().unwrap_or_default())
            .bind(page.limit() + 1)
            .fetch_all(&self.pool)
            .await?;
        paginate(rows, page.limit(), region_row, |r| r.id.clone())
    }
}

fn tenant_row(r: &AnyRow) -> Result<Tenant> {
    Ok(Tenant {
        id: r.try_get("id")?,
        name: r.try_get("name")?,
        created_at_ms: r.try_get("created_at_ms")?,
    })
}

fn region_row(r: &AnyRow) -> Result<Region> {
    Ok(Region {
        id: r.try_get("id")?,
        name: r.try_get("name")?,
        jurisdiction: r.try_get("jurisdiction")?,
        created_at_ms: r.try_get("created_at_ms")?,
    })
}
