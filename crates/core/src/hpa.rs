//! Kubernetes HPA-compatible replica calculation (target tracking).
