//! Determinism, golden report and malformed-trace tests of the simulator.

use fleetscale_sim::{default_policies, run_text, SimConfig, SimError};

/// Two days of 30-minute rates with a daily peak and a gap.
fn synthetic() -> String {
    let mut s = String::from("timestamp,value\n");
    for i in 0..96 {
        if i == 40 {
            continue; // a missing interval
        }
        let h = (i % 48) as f64 / 2.0;
        let v = 100.0 + 900.0 * (-(h - 14.0).powi(2) / 8.0).exp();
        s.push_str(&format!(
            "2024-01-{:02} {:02}:{:02}:00,{v:.0}\n",
            1 + i / 48,
            (i % 48) / 2,
            (i % 2) * 30
        ));
    }
    s
}

fn cfg(seed: u64) -> SimConfig {
    SimConfig {
        seed,
        peak_instances: 8,
        ..SimConfig::default()
    }
}

#[test]
fn same_seed_same_report() {
    let t = synthetic();
    let a = run_text(&t, "syn", &cfg(3), &default_policies(), &mut |_, _| {}).unwrap();
    let b = run_text(&t, "syn", &cfg(3), &default_policies(), &mut |_, _| {}).unwrap();
    // Compared as JSON: NaN (no request in a bucket) is not equal to itself.
    let json = |r: &fleetscale_sim::Report| serde_json::to_string(r).unwrap();
    assert_eq!(json(&a), json(&b));
    let c = run_text(&t, "syn", &cfg(4), &default_policies(), &mut |_, _| {}).unwrap();
    assert_ne!(
        a.results[0].requests, c.results[0].requests,
        "seed 4 differs"
    );
}

/// `guard_baselines` puts the baselines under the flap budget and leaves
/// fleetscale (always under it) and static alone: KPA, which reverses
/// every few minutes on its own, acts less often and spends more.
#[test]
fn guarded_baselines_change_only_the_baselines() {
    let t = synthetic();
    let plain = run_text(&t, "syn", &cfg(1), &default_policies(), &mut |_, _| {}).unwrap();
    let guarded_cfg = SimConfig {
        guard_baselines: true,
        ..cfg(1)
    };
    let guarded = run_text(&t, "syn", &guarded_cfg, &default_policies(), &mut |_, _| {}).unwrap();
    let get = |r: &fleetscale_sim::Report, name: &str| {
        r.results.iter().find(|p| p.policy == name).unwrap().clone()
    };
    for name in ["fleetscale", "static"] {
        let (a, b) = (get(&plain, name), get(&guarded, name));
        assert_eq!(
            (a.instance_seconds, a.scaling_actions),
            (b.instance_seconds, b.scaling_actions),
            "{name}"
        );
    }
    let (a, b) = (get(&plain, "kpa"), get(&guarded, "kpa"));
    assert!(
        b.scaling_actions < a.scaling_actions,
        "kpa actions {} → {}",
        a.scaling_actions,
        b.scaling_actions
    );
    assert!(
        b.instance_seconds > a.instance_seconds,
        "kpa instance-seconds {} → {}",
        a.instance_seconds,
        b.instance_seconds
    );
}

#[test]
fn golden_report_of_a_small_synthetic_trace() {
    let r = run_text(
        &synthetic(),
        "syn",
        &cfg(1),
        &default_policies(),
        &mut |_, _| {},
    )
    .unwrap()
    .without_timelines();
    let got = serde_json::to_string_pretty(&r).unwrap() + "\n";
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden/synthetic.json");
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(path, &got).unwrap();
    }
    let want = std::fs::read_to_string(path).expect("golden file (UPDATE_GOLDEN=1 writes it)");
    assert_eq!(
        got, want,
        "report changed; rerun with UPDATE_GOLDEN=1 if intended"
    );
}

#[test]
fn malformed_traces_name_the_line() {
    let cases = [
        ("", "empty trace"),
        (
            "timestamp,value\n2024-01-01 00:00:00,1\n2024-13-01 00:05:00,2\n",
            "line 3",
        ),
        (
            "timestamp,value\n2024-01-01 00:00:00,1\n2024-01-01 00:05:00,-2\n",
            "line 3",
        ),
        (
            "timestamp,value\n2024-01-01 00:00:00,1\n2024-01-01 00:05:00\n",
            "line 3",
        ),
        (
            "TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:17:03.9,10\n",
            "line 2",
        ),
        (
            "TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:17:03.9,x,1\n",
            "line 2",
        ),
        ("ts,v\n1,2\n", "line 1"),
    ];
    for (text, want) in cases {
        let e = run_text(
            text,
            "bad",
            &SimConfig::default(),
            &default_policies(),
            &mut |_, _| {},
        )
        .unwrap_err();
        assert!(matches!(e, SimError::Trace(_)));
        assert!(e.to_string().contains(want), "{text:?}: {e}");
    }
}

#[test]
fn sweep_adds_frontiers_and_leaves_results_unchanged() {
    let t = fleetscale_core::trace::parse_trace(&synthetic()).unwrap();
    let policies = default_policies();
    let plain = fleetscale_sim::run(&t, "syn", &cfg(1), &policies, &mut |_, _| {}).unwrap();
    let swept = fleetscale_sim::sweep(&t, "syn", &cfg(1), &policies, &mut |_, _| {}).unwrap();
    assert_eq!(
        serde_json::to_string(&plain.results).unwrap(),
        serde_json::to_string(&swept.results).unwrap()
    );
    let keys: Vec<&str> = swept.frontiers.keys().map(String::as_str).collect();
    assert_eq!(keys, ["fleetscale", "hpa", "keda", "kpa"]);
    assert_eq!(
        swept.frontiers["fleetscale"].len(),
        fleetscale_sim::FLEETSCALE_GOALS.len()
    );
    let names: Vec<&str> = swept
        .equal_attainment
        .iter()
        .map(|e| e.baseline.as_str())
        .collect();
    assert_eq!(names, ["hpa", "keda", "kpa"]);
    let json = serde_json::to_value(swept.without_timelines()).unwrap();
    assert!(json["frontiers"]["hpa"][0]["knob"].is_number());
    assert!(json["frontiers"]["hpa"][0]["slo_attainment"].is_number());
    assert!(json["frontiers"]["hpa"][0]["instance_seconds"].is_number());
}

/// Issue 16's acceptance on the short shared trace (the Azure LLM hour),
/// with fleetscale deciding as the live tick does (fail static and the flap
/// budget applied): against KEDA and KPA, fleetscale's instance-seconds at
/// the baseline's default attainment are at most 0.9 × the baseline's; its
/// default attainment is at least every baseline's − 0.002. Against HPA the
/// ratio is not met with the flap budget (HPA's default misses 17 % of the
/// SLO; reaching that cheaply takes more than four reversals in the hour;
/// `docs/simulation.md`): the test pins that it stays reported as not met
/// rather than passing unnoticed.
#[test]
fn fleetscale_at_equal_attainment_on_the_azure_hour() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/traces/requests/azure-llm-code-2023.csv"
    );
    let Ok(text) = std::fs::read_to_string(path) else {
        eprintln!("skipped: {path} not found");
        return;
    };
    let t = fleetscale_core::trace::parse_trace(&text).unwrap();
    let policies: Vec<_> = default_policies()
        .into_iter()
        .filter(|p| {
            !matches!(
                p,
                fleetscale_sim::PolicyChoice::Step | fleetscale_sim::PolicyChoice::Static
            )
        })
        .collect();
    let r = fleetscale_sim::sweep(
        &t,
        "azure",
        &SimConfig::default(),
        &policies,
        &mut |_, _| {},
    )
    .unwrap();
    assert_eq!(r.equal_attainment.len(), 3);
    for e in &r.equal_attainment {
        let ratio = e.ratio.unwrap_or(f64::INFINITY);
        if e.baseline == "hpa" {
            assert!(
                ratio > 0.9,
                "hpa is met now ({ratio}): update the docs and this test"
            );
        } else {
            assert!(ratio <= 0.9, "{}: ratio {ratio} ({e:?})", e.baseline);
        }
        assert!(
            e.default_attainment_gap >= -0.002,
            "{}: default gap {}",
            e.baseline,
            e.default_attainment_gap
        );
    }
}
