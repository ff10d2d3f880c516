#!/usr/bin/env bash
# Runs every fuzz target for SECONDS seconds each (default 60) on the nightly toolchain, and
# prints a table of executions. Installs cargo-fuzz and the nightly toolchain when missing.
# New inputs go to a temporary corpus, so the checked-in seeds stay as they are; a crash
# leaves its input in fuzz/artifacts/TARGET/ and fails the script.
set -euo pipefail
secs="${1:-60}"
cd "$(dirname "$0")"

if ! rustup toolchain list | grep -q '^nightly'; then
  rustup toolchain install nightly --profile minimal
fi
if ! command -v cargo-fuzz >/dev/null 2>&1; then
  cargo install cargo-fuzz --locked
fi

cargo +nightly fuzz build -O
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
printf '%-16s %10s %12s %10s\n' target seconds executions exec/s > "$work/summary"
for target in $(cargo +nightly fuzz list); do
  mkdir -p "$work/corpus/$target"
  seeds="corpus/$target"
  [ -d "$seeds" ] || seeds=""
  echo "== fuzzing $target for ${secs}s"
  cargo +nightly fuzz run -O "$target" "$work/corpus/$target" $seeds -- \
    -max_total_time="$secs" -rss_limit_mb=2048 -max_len=400000 -print_final_stats=1 \
    2>&1 | tee "$work/$target.log" | grep -E '^(Done|==|#[0-9]+ +DONE)|ERROR|panicked' || true
  if grep -qE 'ERROR: libFuzzer|panicked|SUMMARY: .*Sanitizer' "$work/$target.log"; then
    echo "fuzz target $target crashed; see fuzz/artifacts/$target/" >&2
    tail -n 40 "$work/$target.log" >&2
    exit 1
  fi
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$work/$target.log" | tail -n 1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$work/$target.log" | tail -n 1)
  printf '%-16s %10s %12s %10s\n' "$target" "$secs" "${runs:-?}" "${rate:-?}" >> "$work/summary"
done
echo
cat "$work/summary"
