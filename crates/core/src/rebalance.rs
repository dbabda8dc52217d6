//! Rebalancing one agent type's capacity across regions.
//!
//! `proportional` (the default) redistributes the group's total desired
//! capacity in proportion to each pool's observed demand, within every pool's
//! bounds, by largest remainder. `even` is the seed's plain averaging.

use serde::{Deserialize, Serialize};

/// How to rebalance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// In proportion to observed demand (default).
    #[default]
    Proportional,
    /// The seed's averaging: pools more than 1 away from the mean move to it.
    Even,
}

/// One pool as the rebalancer sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RebalancePool {
    /// Pool id.
    pub id: String,
    /// Agent type (pools are grouped by it).
    pub agent_type: String,
    /// Lower bound.
    pub min: i64,
    /// Upper bound.
    pub max: i64,
    /// Current desired capacity.
    pub desired: i64,
    /// Observed demand in instances (mean load / capacity per instance), if measured.
    pub demand: Option<f64>,
}

/// A change the rebalancer proposes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Move {
    /// Pool id.
    pub pool_id: String,
    /// Capacity before.
    pub from: i64,
    /// Capacity after.
    pub to: i64,
    /// Why.
    pub reason: String,
}

/// Plans the moves for all pools; pools whose size does not change are omitted.
/// Pools without measured demand keep their size under `proportional`.
#[must_use]
pub fn plan(pools: &[RebalancePool], strategy: Strategy) -> Vec<Move> {
    let mut types: Vec<&str> = pools.iter().map(|p| p.agent_type.as_str()).collect();
    types.sort_unstable();
    types.dedup();
    let mut moves = Vec::new();
    for t in types {
        let group: Vec<&RebalancePool> = pools.iter().filter(|p| p.agent_type == t).collect();
        match strategy {
            Strategy::Even => plan_even(&group, &mut moves),
            Strategy::Proportional => plan_proportional(&group, &mut moves),
        }
    }
    moves
}

fn plan_even(group: &[&RebalancePool], moves: &mut Vec<Move>) {
    let total: i64 = group.iter().map(|p| p.desired).sum();
    let avg = total as f64 / group.len() as f64;
    for p in group {
        if (p.desired as f64 - avg).abs() > 1.0 {
            let to = (avg.round() as i64).clamp(p.min, p.max);
            if to != p.desired {
                moves.push(Move {
                    pool_id: p.id.clone(),
                    from: p.desired,
                    to,
                    reason: format!(
                        "Rebalancing from {} to {} (even: mean {avg:.1})",
                        p.desired, to
                    ),
                });
            }
        }
    }
}

fn plan_proportional(group: &[&RebalancePool], moves: &mut Vec<Move>) {
    let measured: Vec<&RebalancePool> = group
        .iter()
        .copied()
        .filter(|p| p.demand.is_some_and(|d| d.is_finite() && d >= 0.0))
        .collect();
    if measured.len() < 2 {
        return;
    }
    let total: i64 = measured.iter().map(|p| p.desired).sum();
    let demand_sum: f64 = measured.iter().map(|p| p.demand.unwrap_or(0.0)).sum();
    let shares: Vec<f64> = measured
        .iter()
        .map(|p| {
            if demand_sum > 0.0 {
                p.demand.unwrap_or(0.0) / demand_sum
            } else {
                1.0 / measured.len() as f64
            }
        })
        .collect();
    let targets = water_fill(&measured, &shares, total);
    for (p, to) in measured.iter().zip(targets) {
        if to != p.desired {
            moves.push(Move {
                pool_id: p.id.clone(),
                from: p.desired,
                to,
                reason: format!(
                    "Rebalancing from {} to {} in proportion to demand {:.2} instances",
                    p.desired,
                    to,
                    p.demand.unwrap_or(0.0)
                ),
            });
        }
    }
}

/// Splits `total` integer units by `shares` within each pool's bounds: finds
/// the level `λ` at which `Σ clamp(λ·shareᵢ, minᵢ, maxᵢ) = total` by bisection
/// (a bounded 200 steps), floors, then settles the rest by largest remainder
/// among pools with room (ties by position).
fn water_fill(pools: &[&RebalancePool], shares: &[f64], total: i64) -> Vec<i64> {
    let n = pools.len();
    let fill = |lambda: f64| -> Vec<f64> {
        (0..n)
            .map(|i| (lambda * shares[i]).clamp(pools[i].min as f64, pools[i].max as f64))
            .collect()
    };
    let (mut lo, mut hi) = (0.0f64, 1.0f64);
    for _ in 0..200 {
        if fill(hi).iter().sum::<f64>() >= total as f64 {
            break;
        }
        hi *= 2.0;
    }
    for _ in 0..200 {
        let mid = (lo + hi) / 2.0;
        if fill(mid).iter().sum::<f64>() < total as f64 {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    let ideal = fill(hi);
    let mut out: Vec<i64> = ideal.iter().map(|x| x.floor() as i64).collect();
    let mut left = total - out.iter().sum::<i64>();
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| {
        let ra = ideal[a] - ideal[a].floor();
        let rb = ideal[b] - ideal[b].floor();
        rb.total_cmp(&ra).then(a.cmp(&b))
    });
    // Each pass adds at most one unit per pool; `left` is at most n after flooring
    // unless bounds cap the pools, so n passes are enough.
    for _ in 0..n {
        for &i in &order {
            if left > 0 && out[i] < pools[i].max {
                out[i] += 1;
                left -= 1;
            }
            if left < 0 && out[i] > pools[i].min {
                out[i] -= 1;
                left += 1;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::{prop_assert, prop_assert_eq, proptest};

    fn pool(id: &str, min: i64, max: i64, desired: i64, demand: Option<f64>) -> RebalancePool {
        RebalancePool {
            id: id.into(),
            agent_type: "writer".into(),
            min,
            max,
            desired,
            demand,
        }
    }

    #[test]
    fn proportional_follows_demand() {
        let pools = [
            pool("a", 1, 10, 5, Some(1.0)),
            pool("b", 1, 10, 5, Some(3.0)),
        ];
        let moves = plan(&pools, Strategy::Proportional);
        let to: Vec<(String, i64)> = moves.iter().map(|m| (m.pool_id.clone(), m.to)).collect();
        assert_eq!(to, [("a".to_string(), 3), ("b".to_string(), 7)]);
    }

    #[test]
    fn proportional_respects_bounds() {
        let pools = [
            pool("a", 4, 10, 5, Some(0.0)),
            pool("b", 1, 5, 5, Some(9.0)),
        ];
        let to: Vec<i64> = plan(&pools, Strategy::Proportional)
            .iter()
            .map(|m| m.to)
            .collect();
        // a is pinned at its min 4, b at its max 5; total 10 cannot all fit:
        // b takes its max, a keeps the rest within bounds.
        assert!(to.is_empty() || to.iter().all(|&t| (1..=10).contains(&t)));
    }

    #[test]
    fn unmeasured_pools_are_untouched() {
        let pools = [pool("a", 1, 10, 5, None), pool("b", 1, 10, 1, Some(3.0))];
        assert!(plan(&pools, Strategy::Proportional).is_empty());
    }

    #[test]
    fn even_matches_the_seed() {
        let pools = [
            pool("a", 1, 10, 1, None),
            pool("b", 1, 10, 9, None),
            pool("c", 1, 10, 5, None),
        ];
        let to: Vec<(String, i64)> = plan(&pools, Strategy::Even)
            .iter()
            .map(|m| (m.pool_id.clone(), m.to))
            .collect();
        assert_eq!(to, [("a".to_string(), 5), ("b".to_string(), 5)]);
    }

    proptest! {
        #[test]
        fn proportional_keeps_bounds_and_total_when_feasible(
            specs in proptest::collection::vec((0i64..5, 0i64..20, 0i64..20, 0.0f64..100.0), 2..6)
        ) {
            let pools: Vec<RebalancePool> = specs.iter().enumerate().map(|(i, &(min, span, off, d))| {
                pool(&format!("p{i}"), min, min + span, min + off.min(span), Some(d))
            }).collect();
            let moves = plan(&pools, Strategy::Proportional);
            let mut sizes: Vec<i64> = pools.iter().map(|p| p.desired).collect();
            for m in &moves {
                let i = pools.iter().position(|p| p.id == m.pool_id).unwrap();
                sizes[i] = m.to;
            }
            for (p, s) in pools.iter().zip(&sizes) {
                prop_assert!(*s >= p.min && *s <= p.max);
            }
            let total: i64 = pools.iter().map(|p| p.desired).sum();
            let lo: i64 = pools.iter().map(|p| p.min).sum();
            let hi: i64 = pools.iter().map(|p| p.max).sum();
            if total >= lo && total <= hi {
                prop_assert_eq!(sizes.iter().sum::<i64>(), total);
            }
        }
    }
}
