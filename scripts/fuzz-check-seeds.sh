#!/usr/bin/env bash
# Seeds from the simulated machine: scripts/fuzz-check-seeds.sh DIR (default
# ${FUZZ_WORK:-/tmp/virq-fuzz-campaign}/check).
#
# `virq check` runs the checklist in every interrupt mode, clean and with each fault of
# `virq faults` injected, and writes each mode's evidence (`--events-dir`: the run's events,
# kinds the doctor's fixtures never contain such as DpcRan, DriverCrash, PowerTransition,
# MsixEntry) and the files a user would have (`--logs`: DbgView capture, WinDbg's !pcitree,
# !irp, dt, !pci with the MSI-X table in !dd/!dq, !devnode, the INF, the device's record).
# They become seeds: DIR/judge/ (event lines), DIR/doctor_parse/ and DIR/win_text/ (the
# files, each distinct file once). scripts/fuzz-campaign.sh runs this and hands DIR/TARGET to
# each target beside its committed seeds; nothing here is committed (a few MB, and the model
# writes them again in seconds). Deterministic: the same tree writes the same files.
set -euo pipefail
cd "$(dirname "$0")/.."

out=${1:-${FUZZ_WORK:-${TMPDIR:-/tmp}/virq-fuzz-campaign}/check}
target_dir=${CARGO_TARGET_DIR:-${FUZZ_WORK:-${TMPDIR:-/tmp}/virq-fuzz-campaign}/target}/virq-cli
cargo build -q -p virq --target-dir "$target_dir"
virq="$target_dir/debug/virq"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
rm -rf "$out" && mkdir -p "$out/judge" "$out/doctor_parse" "$out/win_text"
for fault in none $("$virq" faults | awk '{ print $1 }'); do
    inject=()
    [ "$fault" = none ] || inject=(--inject "$fault")
    # A fault makes the checklist fail: that exit status is the point, not an error.
    "$virq" check "${inject[@]}" --events-dir "$tmp/$fault/events" --logs "$tmp/$fault/logs" \
        >/dev/null 2>&1 || true
    for f in "$tmp/$fault"/events/*.jsonl; do
        [ -e "$f" ] && cp "$f" "$out/judge/$fault-$(basename "$f")"
    done
    for f in "$tmp/$fault"/logs/*/*; do
        [ -e "$f" ] || continue
        mode=$(basename "$(dirname "$f")")
        for t in doctor_parse win_text; do
            cp "$f" "$out/$t/$fault-$mode-$(basename "$f")"
        done
    done
done
# At most what the targets read (-max_len 65536, see scripts/fuzz-lib.sh), cut at a line end:
# a storm's event file runs to megabytes of the same interrupt.
for f in "$out"/*/*; do
    if [ "$(stat -c %s "$f")" -gt 65536 ]; then
        head -c 65536 "$f" | sed '$d' >"$tmp/cut" && mv "$tmp/cut" "$f"
    fi
done
# Each distinct file once: most faults leave most files as a clean run writes them.
for d in "$out"/*/; do
    find "$d" -type f -exec sha1sum {} + | sort | awk 'seen[$1]++ { print $2 }' | xargs -r rm -f
done
for d in "$out"/*/; do
    printf 'fuzz-check-seeds: %s: %d files, %d KiB\n' "$d" "$(find "$d" -type f | wc -l)" \
        "$(($(du -sb "$d" | cut -f1) / 1024))"
done
