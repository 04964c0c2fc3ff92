# Line and region coverage per crate and per surface from an `llvm-cov report` table (one row
# per file: name, regions, missed regions, cover, functions, missed, executed, lines, missed
# lines, cover, ...). Used by scripts/fuzz-campaign.sh; the surfaces are the ones
# docs/reliability.md reports.

function surface(f) {
    if (f ~ /virq-device\/src\/transport\/isr\.rs$/) return "device: INTx (transport/isr.rs)"
    if (f ~ /virq-device\/src\/(msix\.rs|transport\/interrupts\.rs)$/) return "device: MSI-X (msix.rs, transport/interrupts.rs)"
    if (f ~ /virq-device\/src\/ring\.rs$/) return "device: split ring (ring.rs)"
    if (f ~ /virq-device\/src\/memory\//) return "device: guest memory (memory/*)"
    if (f ~ /virq-device\/src\/(transport\/[a-z_]+\.rs|pci\.rs|layout\.rs)$/) return "device: transport (transport/*, pci.rs, layout.rs)"
    if (f ~ /virq-backends\/src\//) return "backends: blk, rng, console (virq-backends)"
    if (f ~ /virq-serve\/src\/parse\.rs$/) return "serve: request parser (parse.rs)"
    if (f ~ /virq-serve\/src\/engine\.rs$/) return "serve: session engine (engine.rs)"
    if (f ~ /virq-doctor\/src\/(parse\/[a-z]+\.rs|detect\.rs|lines\.rs|gate\.rs)$/) return "doctor: readers (parse/*, detect, lines, gate)"
    if (f ~ /virq-judge\/src\//) return "judge (virq-judge)"
    if (f ~ /virq-win7\/src\/(inf|dbgprint|windbg\/[a-z]+)\.rs$/) return "win7: inf, dbgprint, windbg/* (whole files)"
    return ""
}

$1 ~ /\.rs$/ && NF >= 10 {
    f = $1; regions = $2; rmissed = $3; lines = $8; missed = $9
    crate = f; sub(/^.*crates\//, "", crate); sub(/\/.*$/, "", crate)
    if (crate !~ /^virq/) next
    cl[crate] += lines; cm[crate] += missed; cr[crate] += regions; crm[crate] += rmissed
    s = surface(f)
    if (s ~ /^(doctor|device: transport)/) {
        short = f; sub(/^.*crates\//, "", short)
        fl[short] = lines; fm[short] = missed; fr[short] = regions; frm[short] = rmissed
        files[++nfiles] = short
    }
    if (s != "") {
        sl[s] += lines; sm[s] += missed; sr[s] += regions; srm[s] += rmissed
        if (!(s in seen)) { seen[s] = 1; order[++ns] = s }
    }
}

function pct(l, m) { return l ? sprintf("%6.1f%%", 100 * (l - m) / l) : "     -" }

function row(name, l, m, r, rm) {
    printf "%-56s %6d %6d %8s %7d %6d %8s\n", name, l, m, pct(l, m), r, rm, pct(r, rm)
}

function header(what) {
    printf "%-56s %6s %6s %8s %7s %6s %8s\n", what, "lines", "missed", "lines%", "regions", "missed", "regions%"
}

END {
    header("crate")
    n = 0
    for (c in cl) names[++n] = c
    # A small insertion sort keeps the output stable without gawk's asort.
    for (i = 2; i <= n; i++) { v = names[i]; for (j = i - 1; j >= 1 && names[j] > v; j--) names[j + 1] = names[j]; names[j + 1] = v }
    for (i = 1; i <= n; i++) row(names[i], cl[names[i]], cm[names[i]], cr[names[i]], crm[names[i]])
    printf "\n"
    header("surface")
    for (i = 2; i <= ns; i++) { v = order[i]; for (j = i - 1; j >= 1 && order[j] > v; j--) order[j + 1] = order[j]; order[j + 1] = v }
    for (i = 1; i <= ns; i++) row(order[i], sl[order[i]], sm[order[i]], sr[order[i]], srm[order[i]])
    # Each file of the surfaces that must be covered file by file, not only in sum.
    printf "\n"
    header("file (doctor readers, device transport)")
    for (i = 1; i <= nfiles; i++) row(files[i], fl[files[i]], fm[files[i]], fr[files[i]], frm[files[i]])
}
