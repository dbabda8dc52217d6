#!/usr/bin/env bash
# The test command: starts a throwaway PostgreSQL cluster (the PostgreSQL
# conformance and black-box runs are mandatory, never skipped), checks that the
# core stays pure, then runs formatting, lints and every test of the workspace,
# and last fuzzes the API with Schemathesis (scripts/fuzz-api.sh).
set -euo pipefail
cd "$(dirname "$0")/.."

pgdir=$(mktemp -d /tmp/fleetscale-pg.XXXXXX)
chmod 755 "$pgdir"
cleanup() { scripts/pg-throwaway.sh stop "$pgdir/pg"; rm -rf "$pgdir"; }
trap cleanup EXIT
FLEETSCALE_TEST_PG_URL=$(scripts/pg-throwaway.sh start "$pgdir/pg")
export FLEETSCALE_TEST_PG_URL
echo "throwaway PostgreSQL at $FLEETSCALE_TEST_PG_URL"

# The core is pure: no async runtime, database, HTTP server or client.
if cargo tree -p fleetscale-core -e normal --prefix none | grep -E '^(tokio|sqlx|axum|reqwest|hyper) ' ; then
  echo "fleetscale-core must not depend on tokio, sqlx, axum, reqwest or hyper" >&2
  exit 1
fi
# The engine is the background work, not the HTTP server: no axum.
if cargo tree -p fleetscale-engine -e normal --prefix none | grep -E '^(axum|utoipa|utoipa-axum) ' ; then
  echo "fleetscale-engine must not depend on axum or utoipa" >&2
  exit 1
fi

# Files are cut along their seams: none outside the tests over 900 lines.
long=$(find crates -name '*.rs' -not -path '*/tests/*' -not -name tests.rs -not -path '*/target/*' \
  -exec awk 'END { if (NR > 900) print FILENAME ": " NR " lines" }' {} \;)
if [ -n "$long" ]; then
  echo "source files over 900 lines (cut them along their seams):" >&2
  echo "$long" >&2
  exit 1
fi

cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
cargo test --workspace "$@"

# API fuzzing: Schemathesis against a served fleetscale (about a minute).
bash scripts/fuzz-api.sh
