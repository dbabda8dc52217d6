//! Workload trace parsing: the two CSV formats of `shared/traces/README.md`,
//! detected from the header, as a pure function over `&str`.
//!
//! * rates: `timestamp,value` — one row per interval; the interval is the most
//!   common spacing of the timestamps, and intervals without a row are
//!   *missing* (`None`), never zero;
//! * requests: `TIMESTAMP,ContextTokens,GeneratedTokens` — one row per request.
//!
//! Every malformed input is an error naming its 1-based line: an empty file,
//! an unknown header, a missing column, a bad timestamp, a bad or negative
//! value, timestamps that do not increase.

use serde::{Deserialize, Serialize};

use crate::budget::calendar::{days_from_civil, days_in_month};

/// Why a trace could not be read. Line numbers are 1-based.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum TraceError {
    /// The input has no header line.
    #[error("empty trace: no header line")]
    Empty,
    /// The header names neither known format.
    #[error("line {line}: unknown header {header:?}: expected `timestamp,value` or `TIMESTAMP,ContextTokens,GeneratedTokens`")]
    UnknownHeader {
        /// Line of the header.
        line: usize,
        /// The header as found.
        header: String,
    },
    /// A row has fewer columns than the header.
    #[error("line {line}: missing column {column}")]
    MissingColumn {
        /// Line of the row.
        line: usize,
        /// The missing column's name.
        column: String,
    },
    /// A timestamp is not `YYYY-MM-DD HH:MM:SS[.fffffff]`.
    #[error("line {line}: bad timestamp {value:?}: expected YYYY-MM-DD HH:MM:SS[.fff]")]
    BadTimestamp {
        /// Line of the row.
        line: usize,
        /// The text found.
        value: String,
    },
    /// A value is not a finite number.
    #[error("line {line}: column {column}: bad number {value:?}")]
    BadValue {
        /// Line of the row.
        line: usize,
        /// Column name.
        column: String,
        /// The text found.
        value: String,
    },
    /// A value is negative.
    #[error("line {line}: column {column}: negative value {value}")]
    Negative {
        /// Line of the row.
        line: usize,
        /// Column name.
        column: String,
        /// The value.
        value: f64,
    },
    /// A timestamp is not later than the one before it (rates: not in a later interval).
    #[error("line {line}: timestamp does not increase")]
    NotIncreasing {
        /// Line of the row.
        line: usize,
    },
    /// The trace has no data rows (rates need two, to know the interval).
    #[error("trace has {rows} data row(s): need at least {needed}")]
    TooFewRows {
        /// Rows found.
        rows: usize,
        /// Rows needed.
        needed: usize,
    },
}

/// A regular series: `values[i]` is the count in the interval starting at
/// `start_ms + i * interval_ms`; `None` where the trace has no row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RateSeries {
    /// Start of the first interval, Unix ms.
    pub start_ms: i64,
    /// Interval length, ms (> 0).
    pub interval_ms: i64,
    /// One value per interval; `None` = missing.
    pub values: Vec<Option<f64>>,
}

impl RateSeries {
    /// Start of interval `i`, Unix ms.
    pub fn time_of(&self, i: usize) -> i64 {
        self.start_ms + self.interval_ms * i as i64
    }

    /// Number of intervals that have a value.
    pub fn present(&self) -> usize {
        self.values.iter().filter(|v| v.is_some()).count()
    }
}

/// One request of a request trace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    /// Arrival, Unix ms.
    pub ts_ms: i64,
    /// Prompt tokens.
    pub context_tokens: u64,
    /// Output tokens.
    pub generated_tokens: u64,
}

/// A parsed trace.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "format", rename_all = "snake_case")]
pub enum Trace {
    /// A rate trace.
    Rates(RateSeries),
    /// A request trace, in arrival order.
    Requests {
        /// The requests.
        requests: Vec<Request>,
    },
}

impl Trace {
    /// The trace as a regular series of counts per interval. A rate trace is
    /// returned as is when `interval_ms` is `None`; a request trace is counted
    /// per interval (`interval_ms`, default 60 s) from its first arrival, and
    /// an interval without requests counts 0 (no request did arrive).
    pub fn to_rates(&self, interval_ms: Option<i64>) -> RateSeries {
        match self {
            Trace::Rates(r) => r.clone(),
            Trace::Requests { requests } => {
                let iv = interval_ms.unwrap_or(60_000).max(1);
                let start = requests.first().map_or(0, |r| r.ts_ms);
                let start = start - start.rem_euclid(iv);
                let last = requests.last().map_or(start, |r| r.ts_ms);
                let n = ((last - start) / iv + 1) as usize;
                let mut values = vec![Some(0.0); n];
                for r in requests {
                    let i = ((r.ts_ms - start) / iv) as usize;
                    if let Some(Some(v)) = values.get_mut(i) {
                        *v += 1.0;
                    }
                }
                RateSeries {
                    start_ms: start,
                    interval_ms: iv,
                    values,
                }
            }
        }
    }
}

/// Parses `YYYY-MM-DD HH:MM:SS[.f{1,9}]` (or with `T`), UTC, to Unix ms
/// (fractions below a millisecond are truncated).
pub fn parse_timestamp(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 19 || !(b[10] == b' ' || b[10] == b'T') {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let t = &s[r];
        if t.bytes().all(|c| c.is_ascii_digit()) {
            t.parse().ok()
        } else {
            None
        }
    };
    if b[4] != b'-' || b[7] != b'-' || b[13] != b':' || b[16] != b':' {
        return None;
    }
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, se) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || d < 1 || d > days_in_month(y, mo) || h > 23 || mi > 59 || se > 59
    {
        return None;
    }
    let mut ms = 0;
    if b.len() > 19 {
        let frac = &s[19..];
        let digits = frac.strip_prefix('.')?;
        if digits.is_empty() || digits.len() > 9 || !digits.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        let padded = format!("{digits:0<3}");
        ms = padded[..3].parse::<i64>().ok()?;
    }
    Some(((days_from_civil(y, mo as u32, d as u32) * 24 + h) * 60 + mi) * 60_000 + se * 1000 + ms)
}

/// Parses a trace in either format (see the module docs).
pub fn parse_trace(input: &str) -> Result<Trace, TraceError> {
    let mut lines = input
        .lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim_end_matches('\r')))
        .filter(|(_, l)| !l.trim().is_empty());
    let (hline, header) = lines.next().ok_or(TraceError::Empty)?;
    let cols: Vec<String> = header
        .trim_start_matches('\u{feff}')
        .split(',')
        .map(|c| c.trim().to_ascii_lowercase())
        .collect();
    let idx = |name: &str| cols.iter().position(|c| c == name);
    if let (Some(t), Some(c), Some(g)) = (
        idx("timestamp"),
        idx("contexttokens"),
        idx("generatedtokens"),
    ) {
        let names = ["TIMESTAMP", "ContextTokens", "GeneratedTokens"];
        let mut requests = Vec::new();
        let mut prev = i64::MIN;
        for (line, l) in lines {
            let f: Vec<&str> = l.split(',').map(str::trim).collect();
            let get = |i: usize, n: usize| {
                f.get(i).copied().ok_or(TraceError::MissingColumn {
                    line,
                    column: names[n].into(),
                })
            };
            let ts_s = get(t, 0)?;
            let ts = parse_timestamp(ts_s).ok_or(TraceError::BadTimestamp {
                line,
                value: ts_s.into(),
            })?;
            if ts < prev {
                return Err(TraceError::NotIncreasing { line });
            }
            prev = ts;
            let tok = |i: usize, n: usize| -> Result<u64, TraceError> {
                let s = get(i, n)?;
                let v = parse_number(s, line, names[n])?;
                if v.fract() != 0.0 {
                    return Err(TraceError::BadValue {
                        line,
                        column: names[n].into(),
                        value: s.into(),
                    });
                }
                Ok(v as u64)
            };
            requests.push(Request {
                ts_ms: ts,
                context_tokens: tok(c, 1)?,
                generated_tokens: tok(g, 2)?,
            });
        }
        if requests.is_empty() {
            return Err(TraceError::TooFewRows { rows: 0, needed: 1 });
        }
        return Ok(Trace::Requests { requests });
    }
    let (Some(t), Some(v)) = (idx("timestamp"), idx("value")) else {
        return Err(TraceError::UnknownHeader {
            line: hline,
            header: header.into(),
        });
    };
    let mut rows: Vec<(usize, i64, Option<f64>)> = Vec::new();
    for (line, l) in lines {
        let f: Vec<&str> = l.split(',').map(str::trim).collect();
        let ts_s = f.get(t).copied().ok_or(TraceError::MissingColumn {
            line,
            column: "timestamp".into(),
        })?;
        let val_s = f.get(v).copied().ok_or(TraceError::MissingColumn {
            line,
            column: "value".into(),
        })?;
        let ts = parse_timestamp(ts_s).ok_or(TraceError::BadTimestamp {
            line,
            value: ts_s.into(),
        })?;
        if let Some(&(_, p, _)) = rows.last() {
            if ts <= p {
                return Err(TraceError::NotIncreasing { line });
            }
        }
        let val = if val_s.is_empty() {
            None
        } else {
            Some(parse_number(val_s, line, "value")?)
        };
        rows.push((line, ts, val));
    }
    if rows.len() < 2 {
        return Err(TraceError::TooFewRows {
            rows: rows.len(),
            needed: 2,
        });
    }
    // The interval is the most common spacing (ties: the smallest).
    let mut deltas: Vec<i64> = rows.windows(2).map(|w| w[1].1 - w[0].1).collect();
    deltas.sort_unstable();
    let (mut best, mut best_n, mut i) = (deltas[0], 0usize, 0usize);
    while i < deltas.len() {
        let j = deltas[i..].partition_point(|&d| d == deltas[i]) + i;
        if j - i > best_n {
            best = deltas[i];
            best_n = j - i;
        }
        i = j;
    }
    let iv = best;
    let start = rows[0].1;
    let mut values: Vec<Option<f64>> = Vec::with_capacity(rows.len());
    for &(line, ts, val) in &rows {
        let slot = ((ts - start) as f64 / iv as f64).round() as usize;
        if slot < values.len() {
            return Err(TraceError::NotIncreasing { line });
        }
        values.resize(slot, None);
        values.push(val);
    }
    Ok(Trace::Rates(RateSeries {
        start_ms: start,
        interval_ms: iv,
        values,
    }))
}

fn parse_number(s: &str, line: usize, column: &str) -> Result<f64, TraceError> {
    let v: f64 = s.parse().map_err(|_| TraceError::BadValue {
        line,
        column: column.into(),
        value: s.into(),
    })?;
    if !v.is_finite() {
        return Err(TraceError::BadValue {
            line,
            column: column.into(),
            value: s.into(),
        });
    }
    if v < 0.0 {
        return Err(TraceError::Negative {
            line,
            column: column.into(),
            value: v,
        });
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps() {
        assert_eq!(parse_timestamp("1970-01-01 00:00:00"), Some(0));
        assert_eq!(
            parse_timestamp("2014-07-01 00:30:00"),
            Some(1_404_174_600_000)
        );
        assert_eq!(
            parse_timestamp("2023-11-16 18:17:03.9799600"),
            Some(1_700_158_623_979)
        );
        for bad in [
            "2014-13-01 00:00:00",
            "2015-02-29 00:00:00",
            "2014-07-01 24:00:00",
            "2014-07-01",
            "2014-07-01 00:00:00.",
            "2014/07/01 00:00:00",
            "2014-07-01 00:00:00Z",
        ] {
            assert_eq!(parse_timestamp(bad), None, "{bad}");
        }
        assert_eq!(
            parse_timestamp("2016-02-29 00:00:00"),
            Some(1_456_704_000_000)
        );
    }

    #[test]
    fn rates_with_gap_are_missing_not_zero() {
        let t = parse_trace(
            "timestamp,value\n2014-07-01 00:00:00,10\n2014-07-01 00:30:00,0\n2014-07-01 02:00:00,7\n2014-07-01 02:30:00,8\n",
        )
        .unwrap();
        let Trace::Rates(r) = t else { panic!() };
        assert_eq!(r.interval_ms, 1_800_000);
        assert_eq!(
            r.values,
            vec![Some(10.0), Some(0.0), None, None, Some(7.0), Some(8.0)]
        );
        assert_eq!(r.present(), 4);
    }

    #[test]
    fn requests_format_and_counts() {
        let t = parse_trace(
            "TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:17:03.9799600,4808,10\n2023-11-16 18:17:04.0319600,3180,8\n2023-11-16 18:19:10.0,1,2\n",
        )
        .unwrap();
        let r = t.to_rates(Some(60_000));
        assert_eq!(r.values, vec![Some(2.0), Some(0.0), Some(1.0)]);
    }

    #[test]
    fn malformed_inputs_name_their_line() {
        use TraceError::*;
        let cases: &[(&str, TraceError)] = &[
            ("", Empty),
            ("\n\n", Empty),
            (
                "time,val\n",
                UnknownHeader {
                    line: 1,
                    header: "time,val".into(),
                },
            ),
            (
                "timestamp,value\n2014-07-01 00:00:00,1\n2014-07-01 00:30:00\n",
                MissingColumn {
                    line: 3,
                    column: "value".into(),
                },
            ),
            (
                "timestamp,value\n2014-07-01 00:00:00,1\nyesterday,2\n",
                BadTimestamp {
                    line: 3,
                    value: "yesterday".into(),
                },
            ),
            (
                "timestamp,value\n2014-07-01 00:00:00,1\n2014-07-01 00:30:00,-2\n",
                Negative {
                    line: 3,
                    column: "value".into(),
                    value: -2.0,
                },
            ),
            (
                "timestamp,value\n2014-07-01 00:00:00,1\n2014-07-01 00:30:00,abc\n",
                BadValue {
                    line: 3,
                    column: "value".into(),
                    value: "abc".into(),
                },
            ),
            (
                "timestamp,value\n2014-07-01 00:30:00,1\n2014-07-01 00:00:00,2\n",
                NotIncreasing { line: 3 },
            ),
            (
                "timestamp,value\n2014-07-01 00:30:00,1\n",
                TooFewRows { rows: 1, needed: 2 },
            ),
            (
                "TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:17:03.9,12,-1\n",
                Negative {
                    line: 2,
                    column: "GeneratedTokens".into(),
                    value: -1.0,
                },
            ),
            (
                "TIMESTAMP,ContextTokens,GeneratedTokens\n",
                TooFewRows { rows: 0, needed: 1 },
            ),
        ];
        for (input, want) in cases {
            assert_eq!(parse_trace(input).unwrap_err(), *want, "{input:?}");
        }
        let msg = parse_trace("timestamp,value\n2014-07-01 00:00:00,1\nx,2\n")
            .unwrap_err()
            .to_string();
        assert!(msg.starts_with("line 3:"), "{msg}");
    }
}
