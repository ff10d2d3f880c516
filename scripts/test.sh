#!/usr/bin/env bash
# The test command from README.md: everything CI checks, in the order that fails fastest.
#   scripts/test.sh            all checks, with a 30 s fuzz smoke per target
#   FUZZ_SECONDS=0 scripts/test.sh   skip the fuzz smoke
#   SCHEMATHESIS=0 scripts/test.sh   skip the schemathesis pass against the phonebook
set -euo pipefail
cd "$(dirname "$0")/.."
fuzz_seconds="${FUZZ_SECONDS:-30}"

step() { printf '\n== %s\n' "$*"; }
started=$SECONDS

step "cargo fmt --check"
cargo fmt --all --check

step "cargo clippy (all targets, warnings denied)"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "cargo test (the test binaries three at a time: scripts/run-tests.py; then the doc tests)"
python3 scripts/run-tests.py
cargo test --workspace --locked --doc

if [ "${SCHEMATHESIS:-1}" != 0 ]; then
  step "schemathesis against a real phonebook (bounded; SCHEMATHESIS=0 skips)"
  cargo build -q --locked -p tincan-phonebook --bin tincan-phonebook
  scripts/schemathesis.sh target/debug/tincan-phonebook
fi

step "cargo doc (warnings denied)"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --locked

if [ "$fuzz_seconds" -gt 0 ]; then
  step "fuzz smoke: ${fuzz_seconds}s per target"
  fuzz/run.sh "$fuzz_seconds"
fi

printf '\nall checks passed in %ss\n' "$((SECONDS - started))"
