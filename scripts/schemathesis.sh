#!/usr/bin/env bash
# Contract test: schemathesis drives a real tincan-phonebook and holds it to its own
# GET /openapi.json. Bounded (about 30 s on 2 cores) and deterministic (fixed seed).
#   scripts/schemathesis.sh [path/to/tincan-phonebook [st run options…]]
#                                       (default target/debug/tincan-phonebook; options are extra)
#   ST_MAX_EXAMPLES=N ST_SEED=S scripts/schemathesis.sh    (cases per operation and phase, default 50;
#                                                           another seed, to explore beyond CI's)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
bin="$(realpath "${1:-$root/target/debug/tincan-phonebook}")"
shift $(($# > 0))
[ -x "$bin" ] || { echo "no phonebook binary at $bin" >&2; exit 1; }
st_version=4.32.5 # config keys and hooks below are this version's
max_examples="${ST_MAX_EXAMPLES:-50}"
seed="${ST_SEED:-20251202}"

if [ "$(python3 -c 'import schemathesis; print(schemathesis.__version__)' 2>/dev/null)" != "$st_version" ]; then
  PIP_ROOT_USER_ACTION=ignore python3 -m pip install --quiet "schemathesis==$st_version"
fi

# Everything schemathesis writes (.hypothesis, .schemathesis) stays in $work, not the tree.
work="$(mktemp -d)"
pid=
cleanup() {
  if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

# Default limits, except --writes-per-minute 0: at 60 writes a minute (bursts of 20) nearly
# every POST/DELETE after the first 20 would be a 429, which says nothing about the contract.
"$bin" --in-memory --listen 127.0.0.1:0 --writes-per-minute 0 \
  --log-format compact >"$work/stdout" 2>"$work/server.log" &
pid=$!
for _ in $(seq 100); do
  addr="$(sed -n 's/^listening on //p' "$work/stdout")"
  [ -n "$addr" ] && break
  kill -0 "$pid" 2>/dev/null || { cat "$work/server.log"; echo "phonebook exited" >&2; exit 1; }
  sleep 0.1
done
[ -n "$addr" ] || { echo "phonebook did not say where it listens" >&2; exit 1; }

cat >"$work/schemathesis.toml" <<'EOF'
[generation]
database = "none"          # no replay of earlier runs' cases: same seed, same run

[checks]
# A mutated body can grow past --max-body-bytes: 413 body-too-large is a rejection too.
negative_data_rejection.expected-statuses = ["400", "401", "403", "404", "405", "409", "413", "415"]
# Tighter than the default (which also passes 401, 403, 404, 409, 429 and 5xx everywhere):
# a schema-valid request must succeed, except where listed below.
positive_data_acceptance.expected-statuses = ["2xx"]

# POST and DELETE /peers/{username} carry an ed25519 signature that generated data never
# satisfies, so the best a schema-valid body can get is the documented 401 bad-signature
# (checked before username-mismatch, freshness and seq). Only 401 is let through: any 400
# (or 403/404/409) for a schema-valid body is still reported.
[[operations]]
include-operation-id = ["register", "delete"]
checks.positive_data_acceptance.expected-statuses = ["2xx", "401"]

# An unbound name is 404 not-found; this server runs no relay, so GET /relay is 404 no-relay.
[[operations]]
include-operation-id = ["lookup", "relay"]
checks.positive_data_acceptance.expected-statuses = ["200", "404"]
EOF

# JSON Schema cannot say some things the server checks; this hook makes schema-valid values
# really valid, just before each request, and leaves schema-invalid ones alone:
# - a PeerId matching the pattern must also hold an ed25519 point: use a real one;
# - an address matching AddrText must also be canonical, and a /p2p/ in it must name the
#   record's own PeerId (or, before /p2p-circuit, another): use real canonical addresses;
# - JSON Schema counts 7.0 as an integer, the phonebook (specs/phonebook.md §2.1) does not.
cat >"$work/tincan_hooks.py" <<'EOF'
import jsonschema_rs
import schemathesis

OWNER = "12D3KooWA4Xop1JaT3MHxwYMkCepYsv4iPVopMXwCz5iHYdBfeSB"  # specs/vectors/phonebook.json
RELAY = "12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN"
ADDRS = [
    "/ip4/127.0.0.1/tcp/4001",
    "/ip6/2001:db8::1/udp/4001/quic-v1",
    "/ip6/::ffff:192.0.2.1/tcp/65535",
    "/dns4/example.org/tcp/443",
    f"/dns/phonebook.example/udp/1/quic-v1/p2p/{OWNER}",
    f"/ip4/203.0.113.7/tcp/4001/p2p/{RELAY}/p2p-circuit",
    f"/ip4/203.0.113.7/udp/4001/quic-v1/p2p/{RELAY}/p2p-circuit/p2p/{OWNER}",
]


def valid(schema, value):
    return jsonschema_rs.validator_for(schema).is_valid(value)


@schemathesis.hook
def before_call(context, case, kwargs):
    body = case.body
    if case.operation.path != "/peers/{username}" or not isinstance(body, dict):
        return
    schemas = case.operation.schema.raw_schema["components"]["schemas"]
    own = schemas["SignedRecord" if case.method.upper() == "POST" else "SignedDelete"]
    for key in ("seq", "expires_at"):
        if isinstance(body.get(key), float) and body[key].is_integer():
            body[key] = int(body[key])
    if isinstance(body.get("peer_id"), str) and valid(own["properties"]["peer_id"], body["peer_id"]):
        body["peer_id"] = OWNER
    if isinstance(body.get("addrs"), list):
        body["addrs"] = [
            ADDRS[i % len(ADDRS)] if isinstance(a, str) and valid(schemas["AddrText"], a) else a
            for i, a in enumerate(body["addrs"])
        ]
EOF

echo "schemathesis $st_version against $bin at $addr: seed $seed, $max_examples examples per operation"
# The contract: no 5xx, only documented statuses and content types, bodies match their schemas,
# schema-valid requests are accepted (as configured above), schema-invalid ones are refused,
# and undocumented methods get 405.
checks=not_a_server_error,status_code_conformance,content_type_conformance
checks+=,response_schema_conformance,positive_data_acceptance,negative_data_rejection,unsupported_method
cd "$work"
status=0
PYTHONPATH="$work" SCHEMATHESIS_HOOKS=tincan_hooks python3 -m schemathesis.cli \
  --config-file "$work/schemathesis.toml" run "http://$addr/openapi.json" \
  --checks "$checks" --max-examples "$max_examples" --seed "$seed" --request-timeout 5 \
  --continue-on-failure --no-color "$@" || status=$?
if [ "$status" -ne 0 ]; then
  echo "schemathesis found failures (exit $status); the phonebook's log ends:" >&2
  tail -n 40 "$work/server.log" >&2
fi
exit "$status"
