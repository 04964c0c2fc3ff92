#!/usr/bin/env bash
# A fuzzing campaign with coverage: scripts/fuzz-campaign.sh [SECONDS_PER_TARGET] (default 600).
#
# For every target (FUZZ_TARGETS="a b" picks some), one after the other, one libFuzzer process
# each at nice $FUZZ_NICE (default 10; on a busy machine, 0 gets the fuzzer a whole core),
# AddressSanitizer build, debug assertions on:
#   1. fuzz for SECONDS_PER_TARGET from the scratch corpus ($FUZZ_WORK/corpus/TARGET, which
#      grows from one campaign to the next), the kept corpus (fuzz/corpus/TARGET), the
#      generated seeds (fuzz/seeds/TARGET), the regression inputs (fuzz/regressions/TARGET-*),
#      for the text targets the doctor's test fixtures, and for judge, doctor_parse and
#      win_text what the simulated machine writes in every mode and fault
#      (scripts/fuzz-check-seeds.sh, into $FUZZ_WORK/check; FUZZ_CHECK_SEEDS=0 skips it);
#   2. minimise what it found together with the kept corpus (libFuzzer -merge=1, what
#      `cargo fuzz cmin` runs) into $FUZZ_WORK/min/TARGET, minus inputs that are seeds verbatim;
#   3. with FUZZ_KEEP=1, replace fuzz/corpus/TARGET with that minimised corpus. fuzz/corpus is
#      ignored by git (megabytes per target): the repository keeps seeds and regressions only.
# Then, unless FUZZ_COVERAGE=0, line and region coverage: every target's coverage build
# (`cargo fuzz coverage`) runs its minimised corpus, seeds and regressions, the profiles are
# merged and `llvm-cov report` (the nightly's llvm-tools) gives the figures per file
# ($FUZZ_WORK/coverage/files.txt), per crate and per surface (scripts/fuzz-coverage-surfaces.awk,
# $FUZZ_WORK/coverage/summary.txt), the Windows text readers function by function
# (scripts/fuzz-coverage-readers.awk, $FUZZ_WORK/coverage/readers.txt); `llvm-cov show` writes the annotated sources with the
# missed lines to $FUZZ_WORK/coverage/show.txt. FUZZ_COVERAGE=only measures the corpus of the
# last campaign in $FUZZ_WORK without fuzzing.
#
# Output: one line per target (executions, time, corpus, crashes), then the coverage tables.
# Crash inputs stay under $FUZZ_WORK/artifacts/TARGET/ and are listed; once fixed, keep one as
# fuzz/regressions/TARGET-WHAT (replayed by the fuzz-smoke stage of .ci/run).
#
# Exit status: 0 when no target crashed, 1 when one did, 2 when tools are missing.
set -uo pipefail
cd "$(dirname "$0")/.."

# shellcheck source=scripts/fuzz-lib.sh
. scripts/fuzz-lib.sh

secs=${1:-600}
targets=${FUZZ_TARGETS:-$all_targets}
work=${FUZZ_WORK:-${TMPDIR:-/tmp}/virq-fuzz-campaign}
target_dir=${CARGO_TARGET_DIR:-$work/target}
triple=$(rustc +nightly -vV 2>/dev/null | sed -n 's/^host: //p')
coverage=${FUZZ_COVERAGE:-1}
niceness=${FUZZ_NICE:-10}

if ! cargo +nightly --version >/dev/null 2>&1; then
    echo "fuzz-campaign: the nightly toolchain is missing (rustup toolchain install nightly)" >&2
    exit 2
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz-campaign: cargo-fuzz is missing (cargo install cargo-fuzz)" >&2
    exit 2
fi
llvm_bin="$(rustc +nightly --print sysroot)/lib/rustlib/$triple/bin"
if [ "$coverage" != 0 ] && [ ! -x "$llvm_bin/llvm-cov" ]; then
    rustup +nightly component add llvm-tools-preview >&2 || true
    if [ ! -x "$llvm_bin/llvm-cov" ]; then
        echo "fuzz-campaign: llvm-cov is missing (rustup +nightly component add llvm-tools-preview)" >&2
        exit 2
    fi
fi

mkdir -p "$work"
check_regression_names || exit 1
# Seeds from the simulated machine (events and user files of every fault and mode) into
# $work/check, unless FUZZ_CHECK_SEEDS=0; kept_inputs hands them to judge, doctor_parse and
# win_text.
if [ "${FUZZ_CHECK_SEEDS:-1}" != 0 ] && ! CARGO_TARGET_DIR="$target_dir" scripts/fuzz-check-seeds.sh "$work/check"; then
    echo "fuzz-campaign: scripts/fuzz-check-seeds.sh failed" >&2
    exit 1
fi
status=0
# Fuzz, minimise and (FUZZ_KEEP=1) keep, target by target.
fuzz_targets() {
    echo "fuzz-campaign: building every target once (release, debug assertions, AddressSanitizer)"
    if ! nice -n "$niceness" cargo +nightly fuzz build --fuzz-dir fuzz --target-dir "$target_dir" \
        >"$work/build.log" 2>&1; then
        tail -20 "$work/build.log"
        echo "fuzz-campaign: the fuzz targets did not build (log: $work/build.log)"
        exit 1
    fi
    local bin_dir="$target_dir/$triple/release" summary="$work/summary.txt" t
    local corpus artifacts min seeds log start end rc execs cov crashes kept kb note f s
    : >"$summary"
    for t in $targets; do
        corpus="$work/corpus/$t"
        artifacts="$work/artifacts/$t"
        min="$work/min/$t"
        mkdir -p "$corpus" "$artifacts"
        # The kept corpus is a starting point; libFuzzer only ever writes into $corpus.
        [ -d "fuzz/corpus/$t" ] && cp -n fuzz/corpus/"$t"/* "$corpus"/ 2>/dev/null
        mapfile -t seeds < <(kept_inputs "$t" "$work")
        log="$work/$t.log"
        touch "$work/$t.start" # crash files older than this are from earlier campaigns
        start=$(date +%s)
        nice -n "$niceness" "$bin_dir/$t" "$corpus" "${seeds[@]}" \
            -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -max_len="$(max_len "$t")" \
            -artifact_prefix="$artifacts/" -print_final_stats=1 >"$log" 2>&1
        rc=$?
        end=$(date +%s)
        execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)
        cov=$(grep -oE 'cov: [0-9]+ ft: [0-9]+' "$log" | tail -1)
        crashes=$(find "$artifacts" -type f -newer "$work/$t.start" | wc -l)
        if [ "$rc" -ne 0 ] || [ "$crashes" -gt 0 ]; then
            status=1
            grep -E 'panicked at|ERROR: libFuzzer|SUMMARY' "$log" | head -5
        fi
        # Minimise the corpus with the seeds: what the seeds already reach is not kept twice.
        rm -rf "$min" && mkdir -p "$min"
        # Inputs that crash while merging go with the fuzzing's crash inputs, not into the
        # current directory.
        nice -n "$niceness" "$bin_dir/$t" -merge=1 "$min" "$corpus" "${seeds[@]}" \
            -max_len="$(max_len "$t")" -timeout=10 -rss_limit_mb=2048 \
            -artifact_prefix="$artifacts/" >"$work/$t.merge.log" 2>&1
        # Inputs that are seeds verbatim are not corpus.
        for s in "${seeds[@]}"; do
            find "$s" -type f -exec sha1sum {} + 2>/dev/null
        done | awk '{ print $1 }' | sort -u >"$work/$t.seed-sums"
        for f in "$min"/*; do
            [ -e "$f" ] || continue
            grep -qx "$(basename "$f")" "$work/$t.seed-sums" && rm -f "$f"
        done
        kept=$(find "$min" -type f | wc -l)
        kb=$(($(du -sb "$min" | cut -f1) / 1024))
        note=""
        if [ "${FUZZ_KEEP:-0}" = 1 ]; then
            rm -rf "fuzz/corpus/$t" && mkdir -p "fuzz/corpus/$t"
            cp "$min"/* "fuzz/corpus/$t"/ 2>/dev/null
            note=", kept in fuzz/corpus/$t"
        fi
        printf '%-15s %11s execs in %5d s (%6s/s)  %-22s minimised corpus %4d files %5d KiB  crashes %d%s\n' \
            "$t" "${execs:-?}" "$((end - start))" "$(( ${execs:-0} / (end - start + 1) ))" \
            "${cov:-cov: ?}" "$kept" "$kb" "$crashes" "$note" | tee -a "$summary"
        find "$artifacts" -type f -newer "$work/$t.start" -printf '  crash input: %p\n' \
            | tee -a "$summary"
    done
}

[ "$coverage" = only ] || fuzz_targets

[ "$coverage" = 0 ] && exit $status

echo "fuzz-campaign: line coverage (cargo fuzz coverage, llvm-cov report)"
cov_dir="$work/coverage"
rm -rf "$cov_dir" && mkdir -p "$cov_dir"
objects=()
for t in $targets; do
    mapfile -t seeds < <(kept_inputs "$t" "$work")
    # A target directory of its own: the coverage build would replace the fuzzing build's.
    if ! nice -n "$niceness" cargo +nightly fuzz coverage --fuzz-dir fuzz \
        --target-dir "$target_dir/coverage" "$t" "$work/min/$t" "${seeds[@]}" -- -max_len="$(max_len "$t")" -rss_limit_mb=2048 \
        >"$cov_dir/$t.log" 2>&1; then
        tail -5 "$cov_dir/$t.log"
        echo "fuzz-campaign: coverage run of $t failed (log: $cov_dir/$t.log)"
        status=1
        continue
    fi
    cp "fuzz/coverage/$t/coverage.profdata" "$cov_dir/$t.profdata"
    objects+=("$target_dir/coverage/$triple/release/$t")
done
[ ${#objects[@]} -gt 0 ] || exit 1
"$llvm_bin/llvm-profdata" merge -sparse "$cov_dir"/*.profdata -o "$cov_dir/all.profdata"
obj_args=("${objects[0]}")
for o in "${objects[@]:1}"; do
    obj_args+=(-object "$o")
done
# virq's own sources only: not the registry, the standard library, the fuzz harnesses or the
# test toolkit the harnesses drive the device with.
"$llvm_bin/llvm-cov" report "${obj_args[@]}" -instr-profile="$cov_dir/all.profdata" \
    --ignore-filename-regex='(/\.cargo/|/rustc/|/\.rustup/|/fuzz/|/src/testing/)' \
    >"$cov_dir/files.txt"
"$llvm_bin/llvm-cov" show "${obj_args[@]}" -instr-profile="$cov_dir/all.profdata" \
    --ignore-filename-regex='(/\.cargo/|/rustc/|/\.rustup/|/fuzz/|/src/testing/)' \
    -show-line-counts -format=text >"$cov_dir/show.txt"
# The Windows text readers share their files with the Windows model's writers: they are
# measured per function (scripts/fuzz-coverage-readers.awk sums the reader functions per file).
demangler=$(command -v llvm-cxxfilt || command -v c++filt || echo cat)
"$llvm_bin/llvm-cov" report --show-functions "${obj_args[@]}" \
    -instr-profile="$cov_dir/all.profdata" "$PWD"/crates/virq-win7/src/windbg/*.rs \
    "$PWD/crates/virq-win7/src/dbgprint.rs" "$PWD/crates/virq-win7/src/inf.rs" \
    | "$demangler" >"$cov_dir/functions-win7.txt"
awk -f scripts/fuzz-coverage-readers.awk "$cov_dir/functions-win7.txt" >"$cov_dir/readers.txt"
awk -f scripts/fuzz-coverage-surfaces.awk "$cov_dir/files.txt" | tee "$cov_dir/summary.txt"
sed -n '1,/^$/p' "$cov_dir/readers.txt"
echo "fuzz-campaign: per-file figures in $cov_dir/files.txt, the readers' functions in $cov_dir/readers.txt"
exit $status
