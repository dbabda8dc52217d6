//! SLO-versus-cost frontiers and the comparison at equal attainment: each
//! policy run over its knob gives points (attainment, instance-seconds);
//! a baseline's default point is compared with what fleetscale spends on
//! its frontier for the same attainment. Pure functions over plain data.

use serde::{Deserialize, Serialize};

/// One run of a policy at one knob setting.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct FrontierPoint {
    /// The knob's value (fleetscale: attainment goal; HPA: target
    /// utilization; KEDA: target outstanding requests per instance; KPA:
    /// target utilization of the container concurrency).
    pub knob: f64,
    /// SLO attainment of the run.
    pub slo_attainment: f64,
    /// Instance-seconds of the run.
    pub instance_seconds: f64,
}

/// What a frontier spends for a given attainment.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum CostAt {
    /// Linear interpolation between the two efficient points around it
    /// (or an efficient point's cost when one has exactly that attainment).
    Interpolated {
        /// Instance-seconds.
        instance_seconds: f64,
    },
    /// The attainment is below the frontier's lowest point: its cheapest
    /// point already reaches more, and counts.
    Cheapest {
        /// Instance-seconds of the cheapest point.
        instance_seconds: f64,
    },
    /// The attainment is above the frontier's highest point.
    FallsShort {
        /// The frontier's highest attainment.
        best_attainment: f64,
    },
}

impl CostAt {
    /// The instance-seconds, unless the frontier falls short.
    pub fn instance_seconds(&self) -> Option<f64> {
        match *self {
            CostAt::Interpolated { instance_seconds } | CostAt::Cheapest { instance_seconds } => {
                Some(instance_seconds)
            }
            CostAt::FallsShort { .. } => None,
        }
    }
}

/// The efficient points of `points`: those no other point beats on both
/// attainment (higher or equal) and cost (lower or equal), ordered by
/// attainment (and so by cost). Points with a non-finite figure are left
/// out. A knob that bought less attainment for more money is not on the
/// frontier: an operator would not choose it.
pub fn efficient(points: &[FrontierPoint]) -> Vec<FrontierPoint> {
    let mut p: Vec<FrontierPoint> = points
        .iter()
        .copied()
        .filter(|x| x.slo_attainment.is_finite() && x.instance_seconds.is_finite())
        .collect();
    // Highest attainment first, cheapest first among equals; keep a point
    // when it is cheaper than every point of higher attainment.
    p.sort_by(|a, b| {
        b.slo_attainment
            .total_cmp(&a.slo_attainment)
            .then(a.instance_seconds.total_cmp(&b.instance_seconds))
    });
    let mut out: Vec<FrontierPoint> = Vec::new();
    for x in p {
        if out
            .last()
            .is_none_or(|l| x.instance_seconds < l.instance_seconds)
        {
            out.push(x);
        }
    }
    out.reverse();
    out
}

/// What the frontier of `points` spends for `attainment`: linear
/// interpolation between its efficient points; below its lowest point its
/// cheapest point counts; above its highest it falls short.
pub fn cost_at(points: &[FrontierPoint], attainment: f64) -> CostAt {
    let f = efficient(points);
    let (Some(lo), Some(hi)) = (f.first(), f.last()) else {
        return CostAt::FallsShort {
            best_attainment: f64::NAN,
        };
    };
    if attainment > hi.slo_attainment {
        return CostAt::FallsShort {
            best_attainment: hi.slo_attainment,
        };
    }
    if attainment <= lo.slo_attainment {
        return CostAt::Cheapest {
            instance_seconds: lo.instance_seconds,
        };
    }
    for w in f.windows(2) {
        let (a, b) = (w[0], w[1]);
        if attainment <= b.slo_attainment {
            let span = b.slo_attainment - a.slo_attainment;
            let t = if span > 0.0 {
                (attainment - a.slo_attainment) / span
            } else {
                1.0
            };
            return CostAt::Interpolated {
                instance_seconds: a.instance_seconds
                    + t * (b.instance_seconds - a.instance_seconds),
            };
        }
    }
    CostAt::Interpolated {
        instance_seconds: hi.instance_seconds,
    }
}

/// A baseline's default point against fleetscale.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EqualAttainment {
    /// The baseline.
    pub baseline: String,
    /// Its SLO attainment at its default.
    pub slo_attainment: f64,
    /// Its instance-seconds at its default.
    pub instance_seconds: f64,
    /// What fleetscale's frontier spends for that attainment.
    pub fleetscale: CostAt,
    /// fleetscale ÷ baseline instance-seconds (`None`: falls short).
    pub ratio: Option<f64>,
    /// fleetscale's default attainment minus the baseline's.
    pub default_attainment_gap: f64,
}

/// The comparison of each baseline default `(name, attainment,
/// instance-seconds)` with fleetscale's frontier and default attainment.
pub fn equal_attainment(
    fleetscale_frontier: &[FrontierPoint],
    fleetscale_default_attainment: f64,
    baselines: &[(String, f64, f64)],
) -> Vec<EqualAttainment> {
    baselines
        .iter()
        .map(|(name, att, cost)| {
            let c = cost_at(fleetscale_frontier, *att);
            EqualAttainment {
                baseline: name.clone(),
                slo_attainment: *att,
                instance_seconds: *cost,
                fleetscale: c,
                ratio: c
                    .instance_seconds()
                    .filter(|_| *cost > 0.0)
                    .map(|x| x / cost),
                default_attainment_gap: fleetscale_default_attainment - att,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(knob: f64, a: f64, c: f64) -> FrontierPoint {
        FrontierPoint {
            knob,
            slo_attainment: a,
            instance_seconds: c,
        }
    }

    #[test]
    fn efficient_points_table() {
        #[allow(clippy::type_complexity)]
        let cases: &[(&str, Vec<FrontierPoint>, Vec<(f64, f64)>)] = &[
            ("empty", vec![], vec![]),
            (
                "sorted by attainment",
                vec![p(3.0, 0.99, 30.0), p(1.0, 0.9, 10.0), p(2.0, 0.95, 20.0)],
                vec![(0.9, 10.0), (0.95, 20.0), (0.99, 30.0)],
            ),
            (
                "a dominated point is dropped",
                vec![p(1.0, 0.9, 10.0), p(2.0, 0.89, 15.0), p(3.0, 0.95, 20.0)],
                vec![(0.9, 10.0), (0.95, 20.0)],
            ),
            (
                "equal attainment keeps the cheaper",
                vec![p(1.0, 0.9, 12.0), p(2.0, 0.9, 10.0)],
                vec![(0.9, 10.0)],
            ),
            (
                "NaN is left out",
                vec![p(1.0, f64::NAN, 1.0), p(2.0, 0.5, 2.0)],
                vec![(0.5, 2.0)],
            ),
        ];
        for (name, pts, want) in cases {
            let got: Vec<(f64, f64)> = efficient(pts)
                .iter()
                .map(|x| (x.slo_attainment, x.instance_seconds))
                .collect();
            assert_eq!(&got, want, "{name}");
        }
    }

    #[test]
    fn cost_at_table() {
        let f = vec![
            p(0.9, 0.9, 100.0),
            p(0.95, 0.95, 200.0),
            p(0.99, 0.99, 600.0),
        ];
        let cases: &[(&str, f64, CostAt)] = &[
            (
                "below the lowest: cheapest counts",
                0.8,
                CostAt::Cheapest {
                    instance_seconds: 100.0,
                },
            ),
            (
                "at the lowest",
                0.9,
                CostAt::Cheapest {
                    instance_seconds: 100.0,
                },
            ),
            (
                "halfway",
                0.925,
                CostAt::Interpolated {
                    instance_seconds: 150.0,
                },
            ),
            (
                "on a point",
                0.95,
                CostAt::Interpolated {
                    instance_seconds: 200.0,
                },
            ),
            (
                "upper segment",
                0.97,
                CostAt::Interpolated {
                    instance_seconds: 400.0,
                },
            ),
            (
                "above the highest falls short",
                0.995,
                CostAt::FallsShort {
                    best_attainment: 0.99,
                },
            ),
        ];
        for (name, a, want) in cases {
            let got = cost_at(&f, *a);
            match (got, want) {
                (
                    CostAt::Interpolated {
                        instance_seconds: x,
                    },
                    CostAt::Interpolated {
                        instance_seconds: y,
                    },
                )
                | (
                    CostAt::Cheapest {
                        instance_seconds: x,
                    },
                    CostAt::Cheapest {
                        instance_seconds: y,
                    },
                ) => assert!((x - y).abs() < 1e-9, "{name}: {got:?}"),
                _ => assert_eq!(&got, want, "{name}"),
            }
        }
        assert!(matches!(cost_at(&[], 0.5), CostAt::FallsShort { .. }));
    }

    #[test]
    fn equal_attainment_ratios() {
        let f = vec![p(0.9, 0.9, 100.0), p(0.99, 0.99, 1000.0)];
        let rows = equal_attainment(
            &f,
            0.97,
            &[
                ("hpa".into(), 0.95, 1000.0),
                ("keda".into(), 0.995, 2000.0),
                ("kpa".into(), 0.5, 400.0),
            ],
        );
        assert!((rows[0].ratio.unwrap() - 0.6).abs() < 1e-9, "{:?}", rows[0]);
        assert!((rows[0].default_attainment_gap - 0.02).abs() < 1e-12);
        assert_eq!(rows[1].ratio, None);
        assert!(matches!(rows[1].fleetscale, CostAt::FallsShort { .. }));
        assert!((rows[2].ratio.unwrap() - 0.25).abs() < 1e-9);
    }
}
