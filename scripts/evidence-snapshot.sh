#!/usr/bin/env bash
# Everything `virq check` records, for comparing two builds of virq byte for byte: the
# healthy device and each fault of `virq faults`, with both vector policies, every mode's
# events (DIR/POLICY/FAULT/ev/MODE.jsonl, sequence numbers and virtual time stamps included)
# and the JSON report. A speed change must leave all of it identical:
#
#   scripts/evidence-snapshot.sh old/target/release/virq /tmp/ev-old
#   scripts/evidence-snapshot.sh target/release/virq /tmp/ev-new
#   diff -r /tmp/ev-old /tmp/ev-new && echo identical
#
# Usage: scripts/evidence-snapshot.sh VIRQ_BINARY OUTDIR (OUTDIR is emptied first).
set -u
if [ $# -ne 2 ] || [ ! -x "$1" ]; then
    echo "usage: $0 VIRQ_BINARY OUTDIR" >&2
    exit 2
fi
virq=$1
out=$2
rm -rf "$out"
mkdir -p "$out"
faults=$("$virq" faults | awk '{ print $1 }')
for policy in checklist linux-ladder; do
    for fault in none $faults; do
        dir="$out/$policy/$fault"
        mkdir -p "$dir"
        inject=()
        [ "$fault" != none ] && inject=(--inject "$fault")
        # A broken link makes check exit non-zero; that is part of what is recorded.
        "$virq" check "${inject[@]}" --policy "$policy" --events-dir "$dir/ev" --json \
            >"$dir/report.json" 2>/dev/null
        echo "exit $?" >"$dir/exit"
    done
done
echo "$(find "$out" -type f | wc -l) files in $out"
