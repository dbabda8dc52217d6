//! Robust statistics for the forecaster: medians, MADs, per-phase
//! winsorizing and empirical quantiles. Pure functions over slices.

/// Median of `v` (sorted in place); `None` when empty. NaNs sort last.
pub fn median_mut(v: &mut [f64]) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_unstable_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

/// Median of the present values of `v`.
pub fn median(v: impl Iterator<Item = f64>) -> Option<f64> {
    let mut x: Vec<f64> = v.filter(|x| x.is_finite()).collect();
    median_mut(&mut x)
}

/// Median absolute deviation from `center`, scaled by 1.4826 so that it
/// estimates the standard deviation of normal data.
pub fn mad(v: impl Iterator<Item = f64>, center: f64) -> Option<f64> {
    median(v.map(|x| (x - center).abs())).map(|m| 1.4826 * m)
}

/// Clips every value of `z` to `median ± k · MAD` of its phase (`i mod
/// period`), the MAD floored at `floor`: an isolated spike becomes an
/// ordinary high value of its phase before any statistic is taken.
pub fn winsorize_by_phase(
    z: &[Option<f64>],
    period: usize,
    k: f64,
    floor: f64,
) -> Vec<Option<f64>> {
    let period = period.max(1);
    let mut out = z.to_vec();
    for p in 0..period {
        let at = || z.iter().skip(p).step_by(period).flatten().copied();
        let Some(m) = median(at()) else { continue };
        let s = mad(at(), m).unwrap_or(0.0).max(floor);
        for v in out.iter_mut().skip(p).step_by(period).flatten() {
            *v = v.clamp(m - k * s, m + k * s);
        }
    }
    out
}

/// Quantiles of `v` at probabilities `0, 1/(n-1), ..., 1` (`n` of them,
/// linear interpolation between order statistics); empty when `v` is.
pub fn quantile_table(v: &mut [f64], n: usize) -> Vec<f64> {
    if v.is_empty() || n < 2 {
        return Vec::new();
    }
    v.sort_unstable_by(f64::total_cmp);
    (0..n)
        .map(|i| interpolate(v, i as f64 / (n - 1) as f64))
        .collect()
}

/// The `p` quantile of sorted `v` (linear interpolation), `p` in `[0, 1]`.
pub fn interpolate(sorted: &[f64], p: f64) -> f64 {
    let pos = p.clamp(0.0, 1.0) * (sorted.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = pos.ceil() as usize;
    sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_and_mads() {
        let table = [
            (vec![], None),
            (vec![3.0], Some(3.0)),
            (vec![3.0, 1.0], Some(2.0)),
            (vec![5.0, 1.0, 300.0], Some(5.0)),
        ];
        for (v, want) in table {
            assert_eq!(median(v.into_iter()), want);
        }
        let m = mad([1.0, 2.0, 3.0, 4.0, 1000.0].into_iter(), 3.0).unwrap();
        assert!((m - 1.4826).abs() < 1e-12, "{m}");
    }

    #[test]
    fn winsorizing_clips_a_spike_to_its_phase() {
        // Two phases: 10 and 20; one spike of 3000 at phase 1.
        let mut z: Vec<Option<f64>> = (0..20)
            .map(|i| Some(if i % 2 == 0 { 10.0 } else { 20.0 } + (i % 3) as f64))
            .collect();
        z[7] = Some(3000.0);
        z[4] = None;
        let w = winsorize_by_phase(&z, 2, 4.0, 0.1);
        assert!(w[7].unwrap() < 30.0, "{:?}", w[7]);
        assert_eq!(w[4], None);
        assert_eq!(w[0], z[0]);
        assert_eq!(w[9], z[9]);
    }

    #[test]
    fn quantile_tables_interpolate() {
        let mut v = vec![4.0, 0.0, 2.0, 1.0, 3.0];
        assert_eq!(quantile_table(&mut v, 3), vec![0.0, 2.0, 4.0]);
        assert_eq!(interpolate(&v, 0.125), 0.5);
        assert!(quantile_table(&mut [], 3).is_empty());
    }
}
