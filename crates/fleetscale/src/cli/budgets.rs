//! `fleetscale budgets ...`: region AI budgets over the REST API (show,
//! allocate, spend, refund, check, reserve/commit/release, reset,
//! transactions, check-ledger); `budgets tenant ...` and `budgets tiers`
//! (tenant provider budgets and their phase 66 tier defaults) are in
//! `tenant_budgets`.

use clap::Subcommand;
use serde_json::{json, Value};

use super::client::{self, Conn};
use super::output::{print_json, print_table, print_violations, LedgerBroken, Output};
use super::tenant_budgets::{self, TenantBudgetsCmd};

/// Budget subcommands. `REGION` is a region's id or name; amounts are integer cents.
#[derive(Subcommand, Debug)]
pub enum BudgetsCmd {
    /// A region's budget: monthly, remaining, spent today, spend by job type and agency.
    Show {
        /// Region id or name.
        region: String,
    },
    /// Budgets of every region.
    List(client::PageArgs),
    /// Add to a region's monthly budget (global admin).
    Allocate {
        /// Region id or name.
        region: String,
        /// Amount in cents.
        #[arg(long, allow_negative_numbers = true)]
        amount_cents: i64,
        /// Description.
        #[arg(long)]
        description: Option<String>,
    },
    /// Charge a region's budget atomically (refused when it does not cover the amount).
    Spend {
        /// Region id or name.
        region: String,
        /// Amount in cents.
        #[arg(long, allow_negative_numbers = true)]
        amount_cents: i64,
        /// Job type (posting, orchestration, creative, intel, ...).
        #[arg(long)]
        job_type: String,
        /// Agency (tenant) charged.
        #[arg(long)]
        agency_id: Option<String>,
        /// Idempotency key: a retry with the same key charges nothing more.
        #[arg(long)]
        idempotency_key: Option<String>,
        /// Why (recorded on the ledger entry).
        #[arg(long)]
        description: Option<String>,
    },
    /// Refund (part of) a spend.
    Refund {
        /// Region id or name.
        region: String,
        /// The spend's transaction id.
        #[arg(long)]
        transaction_id: String,
        /// Amount in cents (at most what is left of the spend).
        #[arg(long, allow_negative_numbers = true)]
        amount_cents: i64,
        /// Idempotency key.
        #[arg(long)]
        idempotency_key: Option<String>,
        /// Why, e.g. "Operation cancelled" (recorded on the ledger entry).
        #[arg(long)]
        description: Option<String>,
    },
    /// Would this amount be accepted now? (no side effect)
    Check {
        /// Region id or name.
        region: String,
        /// Amount in cents.
        #[arg(long, allow_negative_numbers = true)]
        amount_cents: i64,
    },
    /// Hold an amount for a long operation.
    Reserve {
        /// Region id or name.
        region: String,
        /// Amount in cents.
        #[arg(long)]
        amount_cents: i64,
        /// Job type.
        #[arg(long)]
        job_type: String,
        /// Seconds until the hold expires (default 300).
        #[arg(long)]
        ttl_secs: Option<i64>,
        /// Idempotency key.
        #[arg(long)]
        idempotency_key: Option<String>,
    },
    /// Charge a reservation's actual cost and release the rest.
    Commit {
        /// Region id or name.
        region: String,
        /// Reservation id.
        reservation_id: String,
        /// Actual cost in cents (0..=held).
        #[arg(long)]
        amount_cents: i64,
    },
    /// Give a reservation back.
    Release {
        /// Region id or name.
        region: String,
        /// Reservation id.
        reservation_id: String,
    },
    /// Reset a budget by hand: daily (spent today) or monthly (refill).
    Reset {
        /// Region id or name.
        region: String,
        /// daily or monthly.
        #[arg(long)]
        period: String,
    },
    /// The ledger, newest first.
    Transactions {
        /// Region id or name.
        region: String,
        #[command(flatten)]
        page: client::PageArgs,
    },
    /// Recompute the balances from the ledger and verify every invariant (exit 3 when broken).
    CheckLedger {
        /// Region id or name.
        region: String,
    },
    /// A tenant's provider budgets: tier, allocations, usage, projection.
    Tenant {
        #[command(subcommand)]
        cmd: TenantBudgetsCmd,
    },
    /// The default provider allocations of each scaling tier.
    Tiers {
        /// soft_launch, hard_launch or growth.
        #[arg(long)]
        tier: Option<String>,
    },
}

const BUDGET_COLS: &[&str] = &[
    "region_id",
    "monthly_cents",
    "remaining_cents",
    "spent_today_cents",
    "reserved_cents",
    "transactions",
];
const TX_COLS: &[&str] = &[
    "seq",
    "id",
    "transaction_type",
    "amount_cents",
    "balance_after_cents",
    "job_type",
    "agency_id",
    "created_at",
];

fn base(region: &str) -> String {
    format!("/api/v1/regions/{}/budget", client::encode(region))
}

/// Runs one budgets subcommand.
pub async fn run(cmd: BudgetsCmd, conn: Conn) -> anyhow::Result<()> {
    match cmd {
        BudgetsCmd::Show { region } => {
            let v = conn.get_json(&base(&region)).await?;
            conn.show(&v, BUDGET_COLS);
            if conn.output == Output::Table {
                for (title, key) in [
                    ("spend by job type", "spend_by_job_type"),
                    ("spend by agency", "spend_by_agency"),
                ] {
                    if let Some(m) = v[key].as_object().filter(|m| !m.is_empty()) {
                        println!("{title}:");
                        for (k, c) in m {
                            println!("  {:<24} {c}", if k.is_empty() { "-" } else { k });
                        }
                    }
                }
                let f = &v["forecast"];
                if let Some(projected) = f["projected_month_spend_cents"].as_i64() {
                    println!(
                        "forecast: {projected} cents this month at the rate so far; {}",
                        match f["exhausted_at"].as_str() {
                            Some(t) => format!("runs out at {t}"),
                            None => "lasts the month".to_string(),
                        }
                    );
                }
            }
            Ok(())
        }
        BudgetsCmd::List(page) => conn.list("/api/v1/budgets", &[], &page, BUDGET_COLS).await,
        BudgetsCmd::Allocate {
            region,
            amount_cents,
            description,
        } => {
            let body = json!({"amount_cents": amount_cents, "description": description});
            conn.post_show(
                &format!("{}/allocate", base(&region)),
                &body,
                &["transaction_id", "allocated_cents", "balance_after_cents"],
            )
            .await
        }
        BudgetsCmd::Spend {
            region,
            amount_cents,
            job_type,
            agency_id,
            idempotency_key,
            description,
        } => {
            let body = json!({"amount_cents": amount_cents, "job_type": job_type, "agency_id": agency_id, "idempotency_key": idempotency_key, "description": description});
            conn.post_show(
                &format!("{}/spend", base(&region)),
                &body,
                &[
                    "transaction_id",
                    "charged_cents",
                    "balance_after_cents",
                    "replayed",
                ],
            )
            .await
        }
        BudgetsCmd::Refund {
            region,
            transaction_id,
            amount_cents,
            idempotency_key,
            description,
        } => {
            let body = json!({"transaction_id": transaction_id, "amount_cents": amount_cents, "idempotency_key": idempotency_key, "description": description});
            conn.post_show(
                &format!("{}/refund", base(&region)),
                &body,
                &[
                    "transaction_id",
                    "refunded_cents",
                    "balance_after_cents",
                    "replayed",
                ],
            )
            .await
        }
        BudgetsCmd::Check {
            region,
            amount_cents,
        } => {
            conn.post_show(
                &format!("{}/check", base(&region)),
                &json!({ "amount_cents": amount_cents }),
                &["allowed", "amount_cents", "remaining_cents", "message"],
            )
            .await
        }
        BudgetsCmd::Reserve {
            region,
            amount_cents,
            job_type,
            ttl_secs,
            idempotency_key,
        } => {
            let body = json!({"amount_cents": amount_cents, "job_type": job_type, "ttl_secs": ttl_secs, "idempotency_key": idempotency_key});
            let v = conn
                .post_json(&format!("{}/reserve", base(&region)), &body)
                .await?;
            show_reservation(&conn, &v);
            Ok(())
        }
        BudgetsCmd::Commit {
            region,
            reservation_id,
            amount_cents,
        } => {
            let v = conn
                .post_json(
                    &format!(
                        "{}/reservations/{}/commit",
                        base(&region),
                        client::encode(&reservation_id)
                    ),
                    &json!({ "amount_cents": amount_cents }),
                )
                .await?;
            show_reservation(&conn, &v);
            Ok(())
        }
        BudgetsCmd::Release {
            region,
            reservation_id,
        } => {
            let v = conn
                .post_json(
                    &format!(
                        "{}/reservations/{}/release",
                        base(&region),
                        client::encode(&reservation_id)
                    ),
                    &json!({}),
                )
                .await?;
            show_reservation(&conn, &v);
            Ok(())
        }
        BudgetsCmd::Reset { region, period } => {
            conn.post_show(
                &format!("{}/reset", base(&region)),
                &json!({ "period": period }),
                &["transaction_id", "period", "balance_after_cents"],
            )
            .await
        }
        BudgetsCmd::Transactions { region, page } => {
            conn.list(
                &format!("{}/transactions", base(&region)),
                &[],
                &page,
                TX_COLS,
            )
            .await
        }
        BudgetsCmd::CheckLedger { region } => {
            let v = conn
                .get_json(&format!("{}/ledger-check", base(&region)))
                .await?;
            match conn.output {
                Output::Json => print_json(&v),
                Output::Table => {
                    println!(
                        "{} entries replayed; recomputed remaining {} cents, stored {} cents",
                        v["entries"],
                        v["recomputed"]["remaining_cents"],
                        v["stored"]["remaining_cents"]
                    );
                    print_violations(&v);
                    println!(
                        "{}",
                        if v["ok"] == true {
                            "ledger OK"
                        } else {
                            "LEDGER BROKEN"
                        }
                    );
                }
            }
            if v["ok"] != true {
                anyhow::bail!(LedgerBroken);
            }
            Ok(())
        }
        BudgetsCmd::Tenant { cmd } => tenant_budgets::run(cmd, conn).await,
        BudgetsCmd::Tiers { tier } => tenant_budgets::tiers(tier, conn).await,
    }
}

fn show_reservation(conn: &Conn, v: &Value) {
    match conn.output {
        Output::Json => print_json(v),
        Output::Table => {
            let mut row = v["reservation"].clone();
            row["transaction_id"] = v["transaction_id"].clone();
            row["balance_after_cents"] = v["balance_after_cents"].clone();
            print_table(
                std::slice::from_ref(&row),
                &[
                    "id",
                    "status",
                    "amount_cents",
                    "committed_cents",
                    "expires_at",
                    "balance_after_cents",
                ],
            );
        }
    }
}
