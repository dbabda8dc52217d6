//! Accuracy of forecasts against what happened: MAPE and sMAPE.

use serde::{Deserialize, Serialize};

/// Forecast accuracy over a set of points.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Accuracy {
    /// Mean absolute percentage error, a fraction, over points whose actual is not 0.
    pub mape: f64,
    /// Symmetric MAPE `2|a-f|/(|a|+|f|)`, a fraction (a term is 0 when both are 0).
    pub smape: f64,
    /// Points left out of the MAPE because their actual value is 0.
    pub mape_skipped_zero: usize,
}

/// Accuracy of `forecasts` against `actuals` (pairs).
pub fn accuracy(pairs: impl Iterator<Item = (f64, f64)>) -> Accuracy {
    let (mut ape, mut n_ape, mut sape, mut n, mut zero) = (0.0, 0usize, 0.0, 0usize, 0usize);
    for (a, f) in pairs {
        n += 1;
        if a == 0.0 {
            zero += 1;
        } else {
            ape += ((a - f) / a).abs();
            n_ape += 1;
        }
        let den = a.abs() + f.abs();
        if den > 0.0 {
            sape += 2.0 * (a - f).abs() / den;
        }
    }
    let mean = |s: f64, c: usize| if c > 0 { s / c as f64 } else { 0.0 };
    Accuracy {
        mape: mean(ape, n_ape),
        smape: mean(sape, n),
        mape_skipped_zero: zero,
    }
}
