#!/usr/bin/env bash
# Run every fuzz target for a bounded time: scripts/fuzz.sh [SECONDS_PER_TARGET] (default 60).
#
# Needs the nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz`). The corpus grows in
# $FUZZ_WORK (default /tmp/virq-fuzz), never in the work tree: the committed seeds under
# fuzz/seeds/ (regenerate with `cargo run --manifest-path fuzz/Cargo.toml --bin gen_seeds`)
# and the doctor's test fixtures are read-only inputs. FUZZ_TARGETS="a b" picks targets.
# Exit status: 0 when no target crashed, 1 when one did (its input is kept under
# $FUZZ_WORK/artifacts/TARGET/ and the log names it), 2 when the tools are missing.
set -uo pipefail
cd "$(dirname "$0")/.."

secs=${1:-60}
targets=${FUZZ_TARGETS:-"config_bar queues_blk queues_rng queues_console serve_request doctor_parse"}
work=${FUZZ_WORK:-${TMPDIR:-/tmp}/virq-fuzz}
target_dir=${CARGO_TARGET_DIR:-$work/target}

if ! cargo +nightly --version >/dev/null 2>&1; then
    echo "fuzz.sh: the nightly toolchain is missing (rustup toolchain install nightly)" >&2
    exit 2
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz.sh: cargo-fuzz is missing (cargo install cargo-fuzz)" >&2
    exit 2
fi

mkdir -p "$work"
status=0
for t in $targets; do
    corpus="$work/corpus/$t"
    artifacts="$work/artifacts/$t"
    mkdir -p "$corpus" "$artifacts"
    seeds=()
    [ -d "fuzz/seeds/$t" ] && seeds+=("fuzz/seeds/$t")
    [ "$t" = doctor_parse ] && seeds+=("crates/virq-doctor/tests/fixtures")
    log="$work/$t.log"
    start=$(date +%s)
    cargo +nightly fuzz run --fuzz-dir fuzz --target-dir "$target_dir" "$t" \
        "$corpus" "${seeds[@]}" -- \
        -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -max_len=8192 \
        -artifact_prefix="$artifacts/" -print_final_stats=1 >"$log" 2>&1
    rc=$?
    end=$(date +%s)
    execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)
    cov=$(grep -oE 'cov: [0-9]+' "$log" | tail -1)
    if [ "$rc" -eq 0 ]; then
        echo "fuzz $t: ok, ${execs:-?} executions in $((end - start)) s (${cov:-cov: ?}), corpus $(ls "$corpus" | wc -l) files"
    else
        status=1
        echo "fuzz $t: FAILED (exit $rc) after $((end - start)) s; see $log and $artifacts/"
        grep -E 'panicked at|ERROR: libFuzzer|SUMMARY' "$log" | head -5
    fi
done
exit $status
