//! Replays every Kubernetes HPA conformance vector in `shared/conformance/hpa/`
//! through `fleetscale_core::hpa` and checks the computed output against each
//! vector's `expected` object.

use std::fs;
use std::path::{Path, PathBuf};

use fleetscale_core::hpa::{evaluate_vector, evaluate_vector_at, Family, Vector, VectorOutput};
use serde_json::Value;

fn vector_dir() -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/conformance/hpa"
    ))
}

fn vector_files() -> Vec<PathBuf> {
    let dir = vector_dir();
    let mut files: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    files
}

fn family_of(path: &Path) -> Family {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .expect("file name");
    Family::from_file_name(name).unwrap_or_else(|| panic!("unknown vector family for {name}"))
}

/// Compares `got` with the raw `expected` JSON, key by key, independently of
/// the typed `VectorOutput::mismatches`: every expected key must be present
/// and equal; `error` matches as a substring (README convention).
fn raw_mismatches(expected: &Value, got: &VectorOutput) -> Vec<String> {
    let got = serde_json::to_value(got).expect("serialize output");
    let mut out = Vec::new();
    let expected = expected.as_object().expect("expected is an object");
    for (key, want) in expected {
        let have = got.get(key);
        let ok = if key == "error" {
            match (want.as_str(), have.and_then(Value::as_str)) {
                (Some(w), Some(h)) => h.contains(w),
                _ => false,
            }
        } else {
            have == Some(want)
        };
        if !ok {
            out.push(format!("{key}: expected {want}, got {have:?}"));
        }
    }
    out
}

#[test]
fn every_hpa_vector_matches_expected() {
    let files = vector_files();
    let names: Vec<String> = files
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    for required in ["behavior.json", "legacy.json", "replica_calculator.json"] {
        assert!(
            names.iter().any(|n| n == required),
            "missing {required} in {names:?}"
        );
    }

    let mut failures = Vec::new();
    let mut total = 0usize;
    for path in &files {
        let family = family_of(path);
        let text = fs::read_to_string(path).expect("read vector file");
        let vectors: Vec<Vector> = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{}: cannot parse vectors: {e}", path.display()));
        let raw: Vec<Value> = serde_json::from_str(&text).expect("raw json");
        assert_eq!(vectors.len(), raw.len());
        assert!(!vectors.is_empty(), "{} has no vectors", path.display());
        let file = path.file_name().unwrap().to_string_lossy();
        let mut passed = 0usize;
        for (i, (v, r)) in vectors.iter().zip(&raw).enumerate() {
            total += 1;
            let expected = v
                .expected
                .as_ref()
                .unwrap_or_else(|| panic!("{file}[{i}] {}: no expected", v.name));
            let raw_expected = r.get("expected").expect("raw expected");
            assert!(
                !raw_expected.as_object().expect("object").is_empty(),
                "{file}[{i}] {}: expected is empty",
                v.name
            );
            assert_eq!(
                Family::infer(&v.input),
                Some(family),
                "{file}[{i}] {}",
                v.name
            );
            let got = match evaluate_vector(family, v) {
                Ok(o) => o,
                Err(e) => {
                    failures.push(format!("{file}[{i}] {}: cannot evaluate: {e}", v.name));
                    continue;
                }
            };
            let mut bad = got.mismatches(expected);
            bad.extend(raw_mismatches(raw_expected, &got));
            if bad.is_empty() {
                passed += 1;
            } else {
                failures.push(format!(
                    "{file}[{i}] {} ({}):\n    {}",
                    v.name,
                    v.source.as_deref().unwrap_or("?"),
                    bad.join("\n    ")
                ));
            }
        }
        println!("{file}: {passed}/{} vectors pass", vectors.len());
    }
    assert!(total > 0, "no vectors found");
    assert!(
        failures.is_empty(),
        "{} of {total} vectors failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn vector_results_do_not_depend_on_now() {
    for path in vector_files() {
        let family = family_of(&path);
        let text = fs::read_to_string(&path).expect("read vector file");
        let vectors: Vec<Vector> = serde_json::from_str(&text).expect("parse");
        for v in &vectors {
            let base = evaluate_vector(family, v).expect("evaluate");
            for now in [0i64, 86_400_000, 1_000_000_000_000, 4_102_444_800_000] {
                assert_eq!(
                    evaluate_vector_at(family, v, now).expect("evaluate"),
                    base,
                    "{}: result changed at now = {now}",
                    v.name
                );
            }
        }
    }
}

#[test]
fn output_serializes_like_expected_and_roundtrips() {
    for path in vector_files() {
        let family = family_of(&path);
        let text = fs::read_to_string(&path).expect("read vector file");
        let vectors: Vec<Vector> = serde_json::from_str(&text).expect("parse");
        for v in &vectors {
            let got = evaluate_vector(family, v).expect("evaluate");
            let json = serde_json::to_value(&got).expect("serialize");
            // Every expected key is among the emitted keys.
            let expected = serde_json::to_value(v.expected.as_ref().unwrap()).expect("ser");
            for key in expected.as_object().unwrap().keys() {
                assert!(json.get(key).is_some(), "{}: output lacks {key}", v.name);
            }
            let back: VectorOutput = serde_json::from_value(json).expect("deserialize");
            assert_eq!(back, got, "{}", v.name);
            // The input round-trips through serde too (the CLI re-emits it).
            let again: Vector =
                serde_json::from_value(serde_json::to_value(v).expect("ser")).expect("de");
            assert_eq!(&again, v, "{}", v.name);
        }
    }
}

#[test]
fn vectors_parse_without_expected() {
    let v: Vector = serde_json::from_str(
        r#"{"name": "x", "input": {"stage": "convert", "current_replicas": 5,
            "prenormalized_desired_replicas": 7, "min_replicas": 3, "max_replicas": 8}}"#,
    )
    .expect("parse");
    assert!(v.expected.is_none());
    let out = evaluate_vector(Family::Legacy, &v).expect("evaluate");
    assert_eq!(out.desired_replicas, Some(7));
    // Unknown input fields are rejected rather than silently ignored.
    let bad = serde_json::from_str::<Vector>(
        r#"{"name": "x", "input": {"stage": "convert", "surprise": 1}}"#,
    );
    assert!(bad.is_err());
}
