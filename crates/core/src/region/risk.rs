//! Region health conflicts, region and global risk, and recommendations.
//!
//! Conflicts come from thresholds, not predictions ([`conflicts`]):
//! `capacity_score < 10` critical; overall `pressure > 75` high; budget
//! remaining < 10 % of the allocation high, < 20 % medium (no allocation,
//! no budget conflict); `frozen` critical; `fatigue_score > 50` medium;
//! imbalance: `pressure > 80` while a compliant peer (a region compliant for
//! the same tenants, computed by the caller) is `< 30`, medium, with a
//! rebalance recommendation to the least pressed such peer.
//!
//! Region risk ([`region_risk`]) = 0.4 × pressure + 0.3 × (100 −
//! capacity_score) + 0.2 × budget used % + 0.1 × fatigue, each figure
//! clamped to 0–100; the global risk is the highest region risk (0 with no
//! region). Levels ([`risk_level`]): < 25 low, < 50 medium, < 75 high,
//! else critical.

use serde::{Deserialize, Serialize};

use super::mode::ScalingMode;

/// What risk reads about one region.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RiskRegion {
    /// Region name.
    pub name: String,
    /// Current mode.
    pub mode: ScalingMode,
    /// Overall pressure.
    pub pressure: f64,
    /// Capacity score.
    pub capacity_score: f64,
    /// Fatigue score.
    pub fatigue_score: f64,
    /// Budget allocated for the period (cents).
    pub budget_allocated_cents: i64,
    /// Budget remaining (cents).
    pub budget_remaining_cents: i64,
    /// Regions compliant for the same tenants (rebalance targets).
    #[serde(default)]
    pub compliant_peers: Vec<String>,
    /// The region's most loaded pool, named in capacity recommendations.
    #[serde(default)]
    pub busiest_pool: Option<String>,
}

impl RiskRegion {
    /// Budget used, 0–100 % of the allocation (0 without an allocation).
    #[must_use]
    pub fn budget_used_pct(&self) -> f64 {
        if self.budget_allocated_cents <= 0 {
            return 0.0;
        }
        let used = self
            .budget_allocated_cents
            .saturating_sub(self.budget_remaining_cents);
        clamp100(100.0 * used as f64 / self.budget_allocated_cents as f64)
    }
}

/// Severity of a conflict and level of a risk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    /// Below 25.
    Low,
    /// 25 to below 50.
    Medium,
    /// 50 to below 75.
    High,
    /// 75 and above.
    Critical,
}

/// Which rule a conflict breaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConflictType {
    /// capacity_score < 10.
    LowCapacity,
    /// pressure > 75.
    HighPressure,
    /// Budget remaining < 20 %.
    LowBudget,
    /// Mode frozen.
    Frozen,
    /// fatigue_score > 50.
    Fatigue,
    /// pressure > 80 while a compliant peer is < 30.
    Imbalance,
}

/// One conflict.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Conflict {
    /// The rule.
    #[serde(rename = "type")]
    pub kind: ConflictType,
    /// Region name.
    pub region: String,
    /// How bad.
    pub severity: Level,
    /// In words.
    pub message: String,
}

/// A recommended action and its target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Action {
    /// Move work from one region to another.
    Rebalance {
        /// Pressed region.
        from: String,
        /// Compliant peer with room.
        to: String,
    },
    /// Raise a pool's `max_capacity` in a region.
    RaisePoolMax {
        /// Region name.
        region: String,
        /// The pool, when known.
        pool: Option<String>,
    },
    /// Allocate more budget to a region.
    AllocateBudget {
        /// Region name.
        region: String,
    },
    /// Review the region's mode thresholds and capacity plan (long fatigue).
    ReviewCapacityPlan {
        /// Region name.
        region: String,
    },
}

/// A recommendation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recommendation {
    /// What to do, to what.
    #[serde(flatten)]
    pub action: Action,
    /// In words.
    pub message: String,
}

/// One region's risk.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RegionRisk {
    /// Region name.
    pub region: String,
    /// Risk score 0–100.
    pub score: f64,
    /// Its level.
    pub level: Level,
}

/// The global view.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[must_use]
pub struct GlobalRisk {
    /// Highest region risk.
    pub score: f64,
    /// Its level.
    pub level: Level,
    /// Per region, in input order.
    pub regions: Vec<RegionRisk>,
    /// Every conflict, by region then rule.
    pub conflicts: Vec<Conflict>,
    /// Deduplicated recommendations, in conflict order.
    pub recommendations: Vec<Recommendation>,
}

fn clamp100(v: f64) -> f64 {
    if v.is_nan() {
        100.0
    } else {
        v.clamp(0.0, 100.0)
    }
}

/// Region risk (see the module doc).
#[must_use]
pub fn region_risk(r: &RiskRegion) -> f64 {
    0.4 * clamp100(r.pressure)
        + 0.3 * (100.0 - clamp100(r.capacity_score))
        + 0.2 * r.budget_used_pct()
        + 0.1 * clamp100(r.fatigue_score)
}

/// Level of a risk score (see the module doc).
#[must_use]
pub fn risk_level(score: f64) -> Level {
    if score.is_nan() || score >= 75.0 {
        Level::Critical
    } else if score >= 50.0 {
        Level::High
    } else if score >= 25.0 {
        Level::Medium
    } else {
        Level::Low
    }
}

/// The least pressed peer of `r` below `max_pressure` (ties by name).
fn coolest_peer<'a>(
    r: &RiskRegion,
    all: &'a [RiskRegion],
    max_pressure: f64,
) -> Option<&'a RiskRegion> {
    all.iter()
        .filter(|p| p.name != r.name && r.compliant_peers.contains(&p.name))
        .filter(|p| p.mode != ScalingMode::Frozen && p.pressure < max_pressure)
        .min_by(|a, b| a.pressure.total_cmp(&b.pressure).then(a.name.cmp(&b.name)))
}

/// Conflicts and their recommendations (see the module doc).
#[must_use]
pub fn conflicts(regions: &[RiskRegion]) -> (Vec<Conflict>, Vec<Recommendation>) {
    let mut out = Vec::new();
    let mut recs: Vec<Recommendation> = Vec::new();
    let mut rec = |action: Action, message: String| {
        if !recs.iter().any(|r| r.action == action) {
            recs.push(Recommendation { action, message });
        }
    };
    let mut sorted: Vec<&RiskRegion> = regions.iter().collect();
    sorted.sort_by(|a, b| a.name.cmp(&b.name));
    for r in sorted {
        let name = r.name.clone();
        let mut push = |kind, severity, message: String| {
            out.push(Conflict {
                kind,
                region: name.clone(),
                severity,
                message,
            });
        };
        let raise = Action::RaisePoolMax {
            region: r.name.clone(),
            pool: r.busiest_pool.clone(),
        };
        let raise_msg = match &r.busiest_pool {
            Some(p) => format!("raise pool {p}'s max_capacity in {}", r.name),
            None => format!("raise a pool's max_capacity in {}", r.name),
        };
        if r.capacity_score < 10.0 {
            push(
                ConflictType::LowCapacity,
                Level::Critical,
                format!("{}: capacity score {:.1} < 10", r.name, r.capacity_score),
            );
            rec(raise.clone(), raise_msg.clone());
        }
        if r.pressure > 75.0 {
            push(
                ConflictType::HighPressure,
                Level::High,
                format!("{}: pressure {:.1} > 75", r.name, r.pressure),
            );
            rec(raise.clone(), raise_msg.clone());
        }
        if r.budget_allocated_cents > 0 {
            let remaining = 100.0 - r.budget_used_pct();
            let sev = if remaining < 10.0 {
                Some(Level::High)
            } else if remaining < 20.0 {
                Some(Level::Medium)
            } else {
                None
            };
            if let Some(sev) = sev {
                push(
                    ConflictType::LowBudget,
                    sev,
                    format!("{}: {remaining:.1} % of the budget remains", r.name),
                );
                rec(
                    Action::AllocateBudget {
                        region: r.name.clone(),
                    },
                    format!("allocate budget to {}", r.name),
                );
            }
        }
        if r.mode == ScalingMode::Frozen {
            push(
                ConflictType::Frozen,
                Level::Critical,
                format!("{} is frozen", r.name),
            );
            match coolest_peer(r, regions, 100.0) {
                Some(p) => rec(
                    Action::Rebalance {
                        from: r.name.clone(),
                        to: p.name.clone(),
                    },
                    format!("rebalance {} → {}", r.name, p.name),
                ),
                None => rec(raise.clone(), raise_msg.clone()),
            }
        }
        if r.fatigue_score > 50.0 {
            push(
                ConflictType::Fatigue,
                Level::Medium,
                format!(
                    "{}: {:.1} % of the last 24 h outside normal",
                    r.name, r.fatigue_score
                ),
            );
            rec(
                Action::ReviewCapacityPlan {
                    region: r.name.clone(),
                },
                format!("review the capacity plan of {}", r.name),
            );
        }
        if r.pressure > 80.0 {
            if let Some(p) = coolest_peer(r, regions, 30.0) {
                push(
                    ConflictType::Imbalance,
                    Level::Medium,
                    format!(
                        "{} at pressure {:.1} while compliant peer {} is at {:.1}",
                        r.name, r.pressure, p.name, p.pressure
                    ),
                );
                rec(
                    Action::Rebalance {
                        from: r.name.clone(),
                        to: p.name.clone(),
                    },
                    format!("rebalance {} → {}", r.name, p.name),
                );
            }
        }
    }
    (out, recs)
}

/// Per-region risk, the global risk, conflicts and recommendations.
pub fn global_risk(regions: &[RiskRegion]) -> GlobalRisk {
    let per: Vec<RegionRisk> = regions
        .iter()
        .map(|r| {
            let score = region_risk(r);
            RegionRisk {
                region: r.name.clone(),
                score,
                level: risk_level(score),
            }
        })
        .collect();
    let score = per.iter().map(|r| r.score).fold(0.0, f64::max);
    let (conflicts, recommendations) = conflicts(regions);
    GlobalRisk {
        score,
        level: risk_level(score),
        regions: per,
        conflicts,
        recommendations,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn calm(name: &str) -> RiskRegion {
        RiskRegion {
            name: name.into(),
            mode: ScalingMode::Normal,
            pressure: 20.0,
            capacity_score: 80.0,
            fatigue_score: 0.0,
            budget_allocated_cents: 10_000,
            budget_remaining_cents: 9_000,
            compliant_peers: vec![],
            busiest_pool: Some("p1".into()),
        }
    }

    fn kinds(r: &RiskRegion) -> Vec<(ConflictType, Level)> {
        conflicts(std::slice::from_ref(r))
            .0
            .into_iter()
            .map(|c| (c.kind, c.severity))
            .collect()
    }

    #[test]
    fn each_conflict_rule_at_its_boundary() {
        use ConflictType::*;
        type Edit = fn(&mut RiskRegion);
        let table: [(Edit, &[(ConflictType, Level)]); 14] = [
            (|_| {}, &[]),
            (|r| r.capacity_score = 10.0, &[]),
            (
                |r| r.capacity_score = 9.9,
                &[(LowCapacity, Level::Critical)],
            ),
            (|r| r.pressure = 75.0, &[]),
            (|r| r.pressure = 75.1, &[(HighPressure, Level::High)]),
            (|r| r.budget_remaining_cents = 2_000, &[]),
            (
                |r| r.budget_remaining_cents = 1_999,
                &[(LowBudget, Level::Medium)],
            ),
            (
                |r| r.budget_remaining_cents = 1_000,
                &[(LowBudget, Level::Medium)],
            ),
            (
                |r| r.budget_remaining_cents = 999,
                &[(LowBudget, Level::High)],
            ),
            (|r| r.budget_allocated_cents = 0, &[]),
            (
                |r| r.mode = ScalingMode::Frozen,
                &[(Frozen, Level::Critical)],
            ),
            (|r| r.mode = ScalingMode::Throttled, &[]),
            (|r| r.fatigue_score = 50.0, &[]),
            (|r| r.fatigue_score = 50.1, &[(Fatigue, Level::Medium)]),
        ];
        for (i, (edit, want)) in table.iter().enumerate() {
            let mut r = calm("a");
            edit(&mut r);
            assert_eq!(kinds(&r), want.to_vec(), "row {i}");
        }
    }

    #[test]
    fn imbalance_needs_a_compliant_peer_below_30() {
        let mut hot = calm("hot");
        hot.pressure = 80.1;
        hot.compliant_peers = vec!["cool".into(), "cooler".into()];
        let mut cool = calm("cool");
        cool.pressure = 29.9;
        let mut cooler = calm("cooler");
        cooler.pressure = 10.0;
        let (c, recs) = conflicts(&[hot.clone(), cool.clone(), cooler.clone()]);
        let imb: Vec<_> = c
            .iter()
            .filter(|c| c.kind == ConflictType::Imbalance)
            .collect();
        assert_eq!(imb.len(), 1);
        assert_eq!(
            (imb[0].region.as_str(), imb[0].severity),
            ("hot", Level::Medium)
        );
        assert!(recs.contains(&Recommendation {
            action: Action::Rebalance {
                from: "hot".into(),
                to: "cooler".into()
            },
            message: "rebalance hot → cooler".into(),
        }));
        // 80 is not > 80; 30 is not < 30; a non-peer does not count
        let row = |hp: f64, cp: f64, peer: bool| {
            let mut h = hot.clone();
            h.pressure = hp;
            h.compliant_peers = if peer { vec!["cool".into()] } else { vec![] };
            let mut c = cool.clone();
            c.pressure = cp;
            conflicts(&[h, c])
                .0
                .iter()
                .any(|x| x.kind == ConflictType::Imbalance)
        };
        assert!(row(80.1, 29.9, true));
        assert!(!row(80.0, 29.9, true));
        assert!(!row(80.1, 30.0, true));
        assert!(!row(90.0, 10.0, false));
    }

    #[test]
    fn recommendations_name_action_and_target() {
        let mut r = calm("eu-west");
        r.capacity_score = 5.0;
        r.pressure = 95.0;
        r.budget_remaining_cents = 0;
        r.mode = ScalingMode::Frozen;
        r.fatigue_score = 60.0;
        let (_, recs) = conflicts(&[r]);
        let actions: Vec<Action> = recs.into_iter().map(|r| r.action).collect();
        assert_eq!(
            actions,
            [
                Action::RaisePoolMax {
                    region: "eu-west".into(),
                    pool: Some("p1".into())
                },
                Action::AllocateBudget {
                    region: "eu-west".into()
                },
                Action::ReviewCapacityPlan {
                    region: "eu-west".into()
                },
            ]
        );
        let mut f = calm("a");
        f.mode = ScalingMode::Frozen;
        f.compliant_peers = vec!["b".into()];
        let (_, recs) = conflicts(&[f, calm("b")]);
        assert_eq!(
            recs[0].action,
            Action::Rebalance {
                from: "a".into(),
                to: "b".into()
            }
        );
        assert_eq!(recs[0].message, "rebalance a → b");
    }

    #[test]
    fn risk_formula_and_levels() {
        let r = RiskRegion {
            pressure: 50.0,
            capacity_score: 40.0,
            fatigue_score: 30.0,
            budget_allocated_cents: 100,
            budget_remaining_cents: 25,
            ..calm("a")
        };
        // 0.4*50 + 0.3*60 + 0.2*75 + 0.1*30 = 20 + 18 + 15 + 3
        assert!((region_risk(&r) - 56.0).abs() < 1e-9);
        let table = [
            (0.0, Level::Low),
            (24.9, Level::Low),
            (25.0, Level::Medium),
            (49.9, Level::Medium),
            (50.0, Level::High),
            (74.9, Level::High),
            (75.0, Level::Critical),
            (100.0, Level::Critical),
        ];
        for (s, want) in table {
            assert_eq!(risk_level(s), want, "{s}");
        }
    }

    #[test]
    fn global_is_the_highest_region() {
        let mut hot = calm("hot");
        hot.pressure = 100.0;
        hot.capacity_score = 0.0;
        let g = global_risk(&[calm("a"), hot]);
        assert!((g.score - g.regions[1].score).abs() < 1e-9);
        assert_eq!(g.level, risk_level(g.score));
        let empty = global_risk(&[]);
        assert_eq!((empty.score, empty.level), (0.0, Level::Low));
        assert!(serde_json::to_string(&g)
            .unwrap()
            .contains("\"type\":\"low_capacity\""));
    }
}
