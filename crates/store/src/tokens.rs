//! API tokens: stored by hash, found, listed and revoked.

use sqlx::any::AnyRow;
use sqlx::Row;

use crate::sql::{audit, new_id, not_found, paginate};
use crate::{now_ms, Backend, Listed, Page, Result, Store, StoreError, TokenGrant, TokenInfo};

impl Store {
    /// Stores a token by its hash.
    pub async fn insert_token(
        &self,
        token_hash: &str,
        tenant_id: Option<&str>,
        role: &str,
        name: &str,
        actor: &str,
    ) -> Result<TokenGrant> {
        let id = new_id();
        let now = now_ms();
        let mut tx = self.begin().await?;
        sqlx::query("INSERT INTO api_tokens (id, token_hash, tenant_id, role, name, created_at_ms) VALUES ($1,$2,$3,$4,$5,$6)")
            .bind(&id)
            .bind(token_hash)
            .bind(tenant_id)
            .bind(role)
            .bind(name)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        audit(
            &mut tx,
            actor,
            "token.create",
            tenant_id,
            "token",
            &id,
            serde_json::json!({"role": role, "name": name}),
            now,
        )
        .await?;
        tx.commit().await?;
        Ok(TokenGrant {
            id,
            tenant_id: tenant_id.map(str::to_string),
            role: role.to_string(),
            name: name.to_string(),
        })
    }

    /// Ensures a global admin token with this hash exists (idempotent).
    pub async fn ensure_admin_token(&self, token_hash: &str, name: &str) -> Result<()> {
        sqlx::query("INSERT INTO api_tokens (id, token_hash, tenant_id, role, name, created_at_ms) VALUES ($1,$2,NULL,'admin',$3,$4) ON CONFLICT (token_hash) DO NOTHING")
            .bind(new_id())
            .bind(token_hash)
            .bind(name)
            .bind(now_ms())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// True when any global admin token exists.
    pub async fn has_admin_token(&self) -> Result<bool> {
        let n: i64 = sqlx::query(
            "SELECT COUNT(*) FROM api_tokens WHERE tenant_id IS NULL AND role = 'admin'",
        )
        .fetch_one(&self.pool)
        .await?
        .try_get(0)?;
        Ok(n > 0)
    }

    /// Looks a token up by its hash.
    pub async fn find_token(&self, token_hash: &str) -> Result<Option<TokenGrant>> {
        let row =
            sqlx::query("SELECT id, tenant_id, role, name FROM api_tokens WHERE token_hash = $1")
                .bind(token_hash)
                .fetch_optional(&self.pool)
                .await?;
        row.map(|r| {
            Ok(TokenGrant {
                id: r.try_get("id")?,
                tenant_id: r.try_get("tenant_id")?,
                role: r.try_get("role")?,
                name: r.try_get("name")?,
            })
        })
        .transpose()
    }

    /// Stored tokens, oldest first; `only` restricts to one tenant's.
    pub async fn list_tokens(&self, only: Option<&str>, page: &Page) -> Result<Listed<TokenInfo>> {
        let rows = sqlx::query(
            &format!("SELECT {TOKEN_COLS} FROM api_tokens WHERE ($1 = '' OR tenant_id = $1) AND id > $2 ORDER BY id LIMIT $3"),
        )
        .bind(only.unwrap_or(""))
        .bind(page.cursor.clone().unwrap_or_default())
        .bind(page.limit() + 1)
        .fetch_all(&self.pool)
        .await?;
        paginate(rows, page.limit(), token_row, |t| t.id.clone())
    }

    /// The stored token `id`.
    pub async fn get_token(&self, id: &str) -> Result<TokenInfo> {
        let row = sqlx::query(&format!(
            "SELECT {TOKEN_COLS} FROM api_tokens WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?
        .ok_or_else(|| not_found("token"))?;
        token_row(&row)
    }

    /// Revokes (deletes) the stored token `id` and returns its hash, so the
    /// caller can forget any cached grant of it. With `keep_an_admin`, the
    /// last global admin token is not revoked: [`StoreError::Conflict`].
    pub async fn revoke_token(&self, id: &str, actor: &str, keep_an_admin: bool) -> Result<String> {
        let now = now_ms();
        let mut tx = self.begin().await?;
        let row =
            sqlx::query("SELECT token_hash, tenant_id, role, name FROM api_tokens WHERE id = $1")
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?
                .ok_or_else(|| not_found("token"))?;
        let hash: String = row.try_get("token_hash")?;
        let tenant_id: Option<String> = row.try_get("tenant_id")?;
        let role: String = row.try_get("role")?;
        let name: String = row.try_get("name")?;
        if keep_an_admin && tenant_id.is_none() && role == "admin" {
            // Two admins revoking each other at once must not both pass:
            // PostgreSQL locks every global admin row until the commit
            // (SQLite's IMMEDIATE transaction already holds the write lock).
            let lock = match self.backend {
                Backend::Postgres => " FOR UPDATE",
                Backend::Sqlite => "",
            };
            let admins = sqlx::query(&format!(
                "SELECT id FROM api_tokens WHERE tenant_id IS NULL AND role = 'admin'{lock}"
            ))
            .fetch_all(&mut *tx)
            .await?
            .len();
            if admins <= 1 {
                return Err(StoreError::Conflict {
                    what: "this is the last global admin token and no admin token is set in the environment: revoking it would lock every administrator out".into(),
                });
            }
        }
        let deleted = sqlx::query("DELETE FROM api_tokens WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        if deleted.rows_affected() == 0 {
            // Revoked by a concurrent request since the read above.
            return Err(not_found("token"));
        }
        audit(
            &mut tx,
            actor,
            "token.revoke",
            tenant_id.as_deref(),
            "token",
            id,
            serde_json::json!({"role": role, "name": name}),
            now,
        )
        .await?;
        tx.commit().await?;
        Ok(hash)
    }
}

/// The columns [`token_row`] decodes.
const TOKEN_COLS: &str = "id, tenant_id, role, name, created_at_ms";

fn token_row(r: &AnyRow) -> Result<TokenInfo> {
    Ok(TokenInfo {
        id: r.try_get("id")?,
        tenant_id: r.try_get("tenant_id")?,
        role: r.try_get("role")?,
        name: r.try_get("name")?,
        created_at_ms: r.try_get("created_at_ms")?,
    })
}
