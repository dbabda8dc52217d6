//! `fleetscale budgets tenant ...`: a tenant's phase 66 provider budgets over
//! the REST API (show, list, set-tier, set-provider, record, usage,
//! check-ledger), and `fleetscale budgets tiers`: the allocations of each tier.

use clap::Subcommand;
use serde_json::{json, Value};

use super::client::{self, Conn};
use super::output::{print_json, print_table, print_violations, LedgerBroken, Output};

/// Tenant provider budget subcommands. Units are whole tokens (characters for ElevenLabs).
#[derive(Subcommand, Debug)]
pub enum TenantBudgetsCmd {
    /// A tenant's tier, every provider's allocation, usage this month, projection and cost.
    Show {
        /// Tenant id.
        tenant: String,
    },
    /// Budgets of every tenant the token may see.
    List {
        /// Only this tenant.
        #[arg(long)]
        tenant_id: Option<String>,
        /// At most this many.
        #[arg(long)]
        limit: Option<u32>,
        /// `next_cursor` of the previous page.
        #[arg(long)]
        cursor: Option<String>,
    },
    /// Set a tenant's tier (soft_launch, hard_launch, growth); allocations without an override follow it.
    SetTier {
        /// Tenant id.
        tenant: String,
        /// soft_launch, hard_launch or growth.
        #[arg(long)]
        tier: String,
    },
    /// Replace one provider's settings (omitted values return to their defaults).
    SetProvider {
        /// Tenant id.
        tenant: String,
        /// claude, gemini, openai, elevenlabs or perplexity.
        provider: String,
        /// Monthly allocation in the provider's unit (default: the tier's).
        #[arg(long, allow_negative_numbers = true)]
        allocation_units: Option<i64>,
        /// Price in cents per million units (default: not priced).
        #[arg(long, allow_negative_numbers = true)]
        price_cents_per_million: Option<i64>,
        /// Refuse usage above the allocation (default: record it and report it).
        #[arg(long)]
        hard_limit: bool,
    },
    /// Record usage of a provider (atomic; refused above a hard limit).
    Record {
        /// Tenant id.
        tenant: String,
        /// claude, gemini, openai, elevenlabs or perplexity.
        #[arg(long)]
        provider: String,
        /// Units used (tokens, or characters for ElevenLabs).
        #[arg(long, allow_negative_numbers = true)]
        units: i64,
        /// Job type.
        #[arg(long)]
        job_type: Option<String>,
        /// Idempotency key: a retry with the same key records nothing more.
        #[arg(long)]
        idempotency_key: Option<String>,
        /// Description.
        #[arg(long)]
        description: Option<String>,
    },
    /// The usage ledger, newest first.
    Usage {
        /// Tenant id.
        tenant: String,
        /// Only this provider.
        #[arg(long)]
        provider: Option<String>,
        #[command(flatten)]
        page: client::PageArgs,
    },
    /// Replay the usage ledgers against the counters (exit 3 when broken).
    CheckLedger {
        /// Tenant id.
        tenant: String,
    },
}

const PROVIDER_COLS: &[&str] = &[
    "provider",
    "unit",
    "allocation_units",
    "used_units",
    "utilization_pct",
    "status",
    "projected_units",
    "projected_cost_cents",
    "hard_limit",
];
const USAGE_COLS: &[&str] = &[
    "created_at",
    "provider",
    "units",
    "used_after_units",
    "month",
    "job_type",
    "id",
];
const OUTCOME_COLS: &[&str] = &[
    "usage_id",
    "provider",
    "units",
    "used_after_units",
    "allocation_units",
    "status",
    "replayed",
];

fn base(tenant: &str) -> String {
    format!("/api/v1/budgets/tenants/{}", client::encode(tenant))
}

/// Prints a tenant budget: a header line, the providers, the cost projection.
fn show_budget(conn: &Conn, v: &Value) {
    match conn.output {
        Output::Json => print_json(v),
        Output::Table => {
            println!(
                "tenant {}  tier {}{}  month {}",
                v["tenant_id"].as_str().unwrap_or("?"),
                v["tier"].as_str().unwrap_or("?"),
                if v["tier_set"] == true {
                    ""
                } else {
                    " (default)"
                },
                v["month"].as_str().unwrap_or("?"),
            );
            print_table(
                v["providers"].as_array().map(Vec::as_slice).unwrap_or(&[]),
                PROVIDER_COLS,
            );
            let c = &v["cost_projection"];
            let unpriced: Vec<&str> = c["unpriced"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            println!(
                "cost this month: {} cents so far, {} cents projected{}",
                c["cost_so_far_cents"],
                c["projected_cost_cents"],
                if unpriced.is_empty() {
                    String::new()
                } else {
                    format!(" (not priced: {})", unpriced.join(", "))
                }
            );
        }
    }
}

/// Runs one tenant budget subcommand.
pub async fn run(cmd: TenantBudgetsCmd, conn: Conn) -> anyhow::Result<()> {
    match cmd {
        TenantBudgetsCmd::Show { tenant } => {
            let v = conn.get_json(&base(&tenant)).await?;
            show_budget(&conn, &v);
            Ok(())
        }
        TenantBudgetsCmd::List {
            tenant_id,
            limit,
            cursor,
        } => {
            let v = conn
                .get_json(&client::with_query(
                    "/api/v1/budgets/tenants",
                    &[
                        ("tenant_id", tenant_id),
                        ("limit", limit.map(|l| l.to_string())),
                        ("cursor", cursor),
                    ],
                ))
                .await?;
            match conn.output {
                Output::Json => print_json(&v),
                Output::Table => {
                    let rows: Vec<Value> = v["items"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .flat_map(|t| {
                            t["providers"]
                                .as_array()
                                .into_iter()
                                .flatten()
                                .map(|p| {
                                    let mut p = p.clone();
                                    p["tenant_id"] = t["tenant_id"].clone();
                                    p["tier"] = t["tier"].clone();
                                    p
                                })
                                .collect::<Vec<_>>()
                        })
                        .collect();
                    let mut cols = vec!["tenant_id", "tier"];
                    cols.extend_from_slice(PROVIDER_COLS);
                    print_table(&rows, &cols);
                    if let Some(c) = v["next_cursor"].as_str() {
                        println!("more: --cursor {c}");
                    }
                }
            }
            Ok(())
        }
        TenantBudgetsCmd::SetTier { tenant, tier } => {
            let v = conn
                .send_json(
                    reqwest::Method::PUT,
                    &base(&tenant),
                    &json!({ "tier": tier }),
                )
                .await?;
            show_budget(&conn, &v);
            Ok(())
        }
        TenantBudgetsCmd::SetProvider {
            tenant,
            provider,
            allocation_units,
            price_cents_per_million,
            hard_limit,
        } => {
            let v = conn
                .send_json(
                    reqwest::Method::PUT,
                    &format!("{}/providers/{}", base(&tenant), client::encode(&provider)),
                    &json!({
                        "allocation_units": allocation_units,
                        "price_cents_per_million": price_cents_per_million,
                        "hard_limit": hard_limit,
                    }),
                )
                .await?;
            let mut cols = PROVIDER_COLS.to_vec();
            cols.push("allocation_override_units");
            cols.push("price_cents_per_million");
            conn.show(&v, &cols);
            Ok(())
        }
        TenantBudgetsCmd::Record {
            tenant,
            provider,
            units,
            job_type,
            idempotency_key,
            description,
        } => {
            let body = json!({
                "provider": provider, "units": units, "job_type": job_type,
                "idempotency_key": idempotency_key, "description": description,
            });
            conn.post_show(&format!("{}/usage", base(&tenant)), &body, OUTCOME_COLS)
                .await
        }
        TenantBudgetsCmd::Usage {
            tenant,
            provider,
            page,
        } => {
            conn.list(
                &format!("{}/usage", base(&tenant)),
                &[("provider", provider)],
                &page,
                USAGE_COLS,
            )
            .await
        }
        TenantBudgetsCmd::CheckLedger { tenant } => {
            let v = conn
                .get_json(&format!("{}/ledger-check", base(&tenant)))
                .await?;
            match conn.output {
                Output::Json => print_json(&v),
                Output::Table => {
                    for p in v["providers"].as_array().into_iter().flatten() {
                        println!(
                            "{}: {} entries; this month recomputed {}, stored {}",
                            p["provider"].as_str().unwrap_or("?"),
                            p["entries"],
                            p["recomputed_used"],
                            p["stored_used"]
                        );
                        print_violations(p);
                    }
                    println!(
                        "{}",
                        if v["ok"] == true {
                            "usage ledgers OK"
                        } else {
                            "USAGE LEDGER BROKEN"
                        }
                    );
                }
            }
            if v["ok"] != true {
                anyhow::bail!(LedgerBroken);
            }
            Ok(())
        }
    }
}

/// Runs `fleetscale budgets tiers`: the default provider allocations per
/// tier (one tier, or every tier).
pub async fn tiers(tier: Option<String>, conn: Conn) -> anyhow::Result<()> {
    let v = conn
        .get_json(&client::with_query(
            "/api/v1/budgets/tiers",
            &[("tier", tier)],
        ))
        .await?;
    match conn.output {
        Output::Json => print_json(&v),
        Output::Table => {
            let rows: Vec<Value> = v["items"]
                .as_array()
                .into_iter()
                .flatten()
                .flat_map(|t| {
                    t["providers"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|p| {
                            let mut p = p.clone();
                            p["tier"] = t["tier"].clone();
                            p
                        })
                        .collect::<Vec<_>>()
                })
                .collect();
            print_table(&rows, &["tier", "provider", "monthly_allocation", "unit"]);
        }
    }
    Ok(())
}
