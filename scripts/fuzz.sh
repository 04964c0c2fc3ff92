#!/usr/bin/env bash
# Every fuzz target briefly: scripts/fuzz.sh [SECONDS_PER_TARGET] (default 60). The fuzz-smoke
# stage of .ci/run runs it; scripts/fuzz-campaign.sh runs long campaigns with coverage.
#
# Builds every target once (`cargo fuzz build`, into fuzz/target, so a second run only
# rebuilds what changed), then for each target one libFuzzer run that first executes every
# committed input (fuzz/seeds/TARGET, the regression inputs fuzz/regressions/TARGET-*, and for
# the text targets the doctor's test fixtures; a crash there fails the run) and then fuzzes for
# SECONDS_PER_TARGET. New inputs go to a scratch corpus in $FUZZ_WORK (default
# /tmp/virq-fuzz), never into the work tree. FUZZ_TARGETS="a b" picks targets;
# FUZZ_SANITIZER (default address; `none` builds and runs faster) is cargo fuzz's --sanitizer;
# FUZZ_DEV=1 builds without optimisation (`cargo fuzz build --dev`): less than half the build
# time, for runs too short for the slower executions to matter.
#
# Needs the nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz`). Without them, the
# same inputs replay on any toolchain: `scripts/fuzz.sh --replay` (the `replay` example).
# Exit status: 0 when no target crashed, 1 when one did (its input is kept under
# $FUZZ_WORK/artifacts/TARGET/ and the log names it), 2 when the tools are missing.
set -uo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/fuzz-lib.sh
. scripts/fuzz-lib.sh

targets=${FUZZ_TARGETS:-$all_targets}
work=${FUZZ_WORK:-${TMPDIR:-/tmp}/virq-fuzz}
target_dir=${CARGO_TARGET_DIR:-fuzz/target}

mkdir -p "$work"
check_regression_names || exit 1

if [ "${1:-}" = --replay ]; then
    cargo build --quiet --locked --manifest-path fuzz/Cargo.toml --target-dir "$target_dir" \
        --release --example replay || exit 2
    status=0
    for t in $targets; do
        mapfile -t inputs < <(kept_inputs "$t" "$work")
        "$target_dir/release/examples/replay" "$t" "${inputs[@]}" || status=1
    done
    exit $status
fi

secs=${1:-60}
if ! cargo +nightly --version >/dev/null 2>&1; then
    echo "fuzz.sh: the nightly toolchain is missing (rustup toolchain install nightly)" >&2
    exit 2
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz.sh: cargo-fuzz is missing (cargo install cargo-fuzz)" >&2
    exit 2
fi
triple=$(rustc +nightly -vV | sed -n 's/^host: //p')
sanitizer=${FUZZ_SANITIZER:-address}
profile=(--release) bin_dir="$target_dir/$triple/release"
if [ "${FUZZ_DEV:-0}" = 1 ]; then
    profile=(--dev) bin_dir="$target_dir/$triple/debug"
fi

start=$(date +%s)
if ! cargo +nightly fuzz build --fuzz-dir fuzz --target-dir "$target_dir" \
    --sanitizer "$sanitizer" "${profile[@]}" >"$work/build.log" 2>&1; then
    tail -20 "$work/build.log"
    echo "fuzz.sh: the fuzz targets did not build (log: $work/build.log)"
    exit 1
fi
echo "fuzz: built $(echo "$all_targets" | wc -w) targets (${profile[*]}, sanitizer $sanitizer) in $(($(date +%s) - start)) s"

status=0
for t in $targets; do
    corpus="$work/corpus/$t"
    artifacts="$work/artifacts/$t"
    mkdir -p "$corpus" "$artifacts"
    mapfile -t inputs < <(kept_inputs "$t" "$work")
    replayed=$(find "${inputs[@]}" -type f | wc -l)
    log="$work/$t.log"
    start=$(date +%s)
    "$bin_dir/$t" "$corpus" "${inputs[@]}" \
        -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -max_len="$(max_len "$t")" \
        -artifact_prefix="$artifacts/" -print_final_stats=1 >"$log" 2>&1
    rc=$?
    end=$(date +%s)
    execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)
    cov=$(grep -oE 'cov: [0-9]+' "$log" | tail -1)
    if [ "$rc" -eq 0 ]; then
        echo "fuzz $t: ok, $replayed committed inputs replayed, ${execs:-?} executions in $((end - start)) s (${cov:-cov: ?})"
    else
        status=1
        echo "fuzz $t: FAILED (exit $rc) after $((end - start)) s; see $log and $artifacts/"
        grep -E 'panicked at|ERROR: libFuzzer|SUMMARY' "$log" | head -5
    fi
done
exit $status
