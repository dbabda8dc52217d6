#!/usr/bin/env bash
# API fuzzing (issue 19 item 5): builds `fleetscale`, serves it on a free port
# over a fresh SQLite data directory with an admin token, seeds a tenant, a
# region, a pool and a few objects around them, and runs Schemathesis against
# the served OpenAPI document over every operation but the long-lived
# `GET /stream` (bearer auth, generated bodies, its examples, coverage,
# fuzzing and stateful phases, a fixed seed and a bounded number of examples:
# about a minute on 2 cores). Fails on any error or any failure of the checks
# `not_a_server_error`, `status_code_conformance`,
# `content_type_conformance` and `response_schema_conformance`.
#
# Needs `schemathesis` on the PATH, or in $FLEETSCALE_FUZZ_VENV (default
# /tmp/fleetscale-fuzz-venv), which this script creates with pip when
# missing. Extra arguments go to `schemathesis run`. Environment:
# FUZZ_MAX_EXAMPLES (default 50), FUZZ_SEED (default 19).
set -euo pipefail
cd "$(dirname "$0")/.."

examples=${FUZZ_MAX_EXAMPLES:-50}
seed=${FUZZ_SEED:-19}

st=$(command -v schemathesis || true)
if [ -z "$st" ]; then
  venv=${FLEETSCALE_FUZZ_VENV:-/tmp/fleetscale-fuzz-venv}
  if [ ! -x "$venv/bin/schemathesis" ]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q schemathesis
  fi
  st="$venv/bin/schemathesis"
fi

cargo build -q -p fleetscale
bin="${CARGO_TARGET_DIR:-target}/debug/fleetscale"

work=$(mktemp -d /tmp/fleetscale-fuzz.XXXXXX)
pid=
cleanup() {
  if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
base="http://127.0.0.1:$port"
token="fuzz-$(python3 -c 'import secrets; print(secrets.token_hex(16))')"
FLEETSCALE_ADMIN_TOKEN="$token" "$bin" serve --listen "127.0.0.1:$port" \
  --data-dir "$work/data" --tick 1s >"$work/serve.log" 2>&1 &
pid=$!
for _ in $(seq 1 100); do
  curl -sf "$base/healthz" >/dev/null 2>&1 && break
  kill -0 "$pid" 2>/dev/null || { cat "$work/serve.log" >&2; exit 1; }
  sleep 0.1
done

# A little data, so that lists and path parameters meet real objects: a
# tenant with a tenant budget, a region with a reservation, a pool with a
# sample and a manual scaling event, a routing decision and a routed job.
api() { curl -sf -X "$1" "$base/api/v1$2" -H "Authorization: Bearer $token" \
  -H 'Content-Type: application/json' ${3:+-d "$3"}; }
field() { python3 -c "import json,sys; print(json.load(sys.stdin)$1)"; }
tenant=$(api POST /tenants '{"name":"fuzz"}' | field '["id"]')
region=$(api POST /regions '{"name":"eu-west","jurisdiction":"eu"}' | field '["id"]')
pool=$(api POST /pools "{\"tenant_id\":\"$tenant\",\"region\":\"eu-west\",\"agent_type\":\"writer\",\"min_capacity\":1,\"max_capacity\":10,\"capacity_per_instance\":10,\"metric\":\"throughput\"}" | field '["id"]')
api POST /metrics "{\"samples\":[{\"pool_id\":\"$pool\",\"metric\":\"throughput\",\"value\":42}]}" >/dev/null
api POST /scale "{\"tenant_id\":\"$tenant\",\"pool_id\":\"$pool\",\"capacity\":3,\"reason\":\"fuzz\"}" >/dev/null
event=$(api GET "/scaling-events?pool_id=$pool" | field '["items"][0]["id"]')
api PUT "/budgets/tenants/$tenant" '{"tier":"growth"}' >/dev/null
reservation=$(api POST "/regions/$region/budget/reserve" '{"amount_cents":100,"job_type":"video","ttl_secs":600}' | field '["reservation"]["id"]')
decision=$(api POST /route "{\"tenant_id\":\"$tenant\",\"workload_type\":\"chat\",\"agent_type\":\"writer\"}" | field '["id"]')
job=$(api POST /jobs/route "{\"tenant_id\":\"$tenant\",\"job_type\":\"creative\"}" | field '["id"]')
echo "fuzzing $base (tenant $tenant, region $region, pool $pool; $examples examples per operation, seed $seed)"

# Path parameters take one of the seeded identifiers most of the time (the
# kind of object the path names), a generated value otherwise.
cat >"$work/schemathesis.toml" <<TOML
[dictionaries.ids]
values = ["$tenant", "$region", "eu-west", "$pool", "$event", "$decision", "$job"]
[dictionaries.tenants]
values = ["$tenant"]
[dictionaries.regions]
values = ["$region", "eu-west"]
[dictionaries.pools]
values = ["$pool"]
[dictionaries.events]
values = ["$event"]
[dictionaries.decisions]
values = ["$decision"]
[dictionaries.jobs]
values = ["$job"]
[dictionaries.rids]
values = ["$reservation"]
[dictionaries.providers]
values = ["claude", "openai"]
[parameters]
"path.id" = { dictionary = "ids", probability = 0.8 }
"path.tenant" = { dictionary = "tenants", probability = 0.8 }
"path.rid" = { dictionary = "rids", probability = 0.8 }
"path.provider" = { dictionary = "providers", probability = 0.8 }
"query.tenant_id" = { dictionary = "tenants", probability = 0.5 }
"query.pool_id" = { dictionary = "pools", probability = 0.5 }
"body.tenant_id" = { dictionary = "tenants", probability = 0.5 }
"body.pool_id" = { dictionary = "pools", probability = 0.5 }
[[operations]]
include-path-regex = "^/api/v1/tenants/"
parameters = { "path.id" = { dictionary = "tenants", probability = 0.8 } }
[[operations]]
include-path-regex = "^/api/v1/regions/"
parameters = { "path.id" = { dictionary = "regions", probability = 0.8 } }
[[operations]]
include-path-regex = "^/api/v1/pools/"
parameters = { "path.id" = { dictionary = "pools", probability = 0.8 } }
[[operations]]
include-path-regex = "^/api/v1/scaling-events/"
parameters = { "path.id" = { dictionary = "events", probability = 0.8 } }
[[operations]]
include-path-regex = "^/api/v1/routing/"
parameters = { "path.id" = { dictionary = "decisions", probability = 0.8 } }
[[operations]]
include-path-regex = "^/api/v1/jobs/"
parameters = { "path.id" = { dictionary = "jobs", probability = 0.8 } }
TOML


# GET /stream is a long-lived server-sent event stream: excluded.
started=$(date +%s)
status=0
# Run from the throwaway directory: Schemathesis keeps a crash cache
# (`.schemathesis/`) in its working directory and replays it on the next
# run, and each run here must start from its seed alone.
(cd "$work" && "$st" --config-file "$work/schemathesis.toml" run "$base/api/v1/openapi.json" \
  --header "Authorization: Bearer $token" \
  --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance \
  --max-examples "$examples" --seed "$seed" \
  --exclude-path /api/v1/stream \
  --request-timeout 20 --workers 1 --no-shrink \
  --suppress-health-check all \
  "$@") || status=$?
echo "schemathesis finished in $(($(date +%s) - started)) s (exit $status)"
if [ "$status" != 0 ]; then
  echo "--- last server log lines" >&2
  tail -n 40 "$work/serve.log" >&2
fi
exit "$status"
