# Line coverage of the Windows text readers function by function, from a demangled
# `llvm-cov report --show-functions` over crates/virq-win7/src/{windbg/*,dbgprint,inf}.rs. Those
# files keep each format's writer (the Windows 7 model's output) beside its reader, so a whole
# file's figure says little about the reader the doctor runs on user text: this sums the
# reader functions per file and lists those with missed lines. Writers are recognised by name
# (the list below, kept with the modules' writers); everything else in these files is a reader
# or a helper of one. Used by scripts/fuzz-campaign.sh; docs/reliability.md reports the result.

function writer(name) {
    if (name ~ /dbgprint::(DbgPrint|DbgViewCapture|DbgViewStyle|DebugPrintFilter)/) return 1
    if (name ~ /KernelObjects>::for_start/) return 1
    return name ~ /::(render_[a-z0-9_]+|format_[a-z0-9_]+|fmt_ptr|fmt_ptr_plain|descriptor_bytes|descriptor_fields|value_text|v|four|line|large|rd16|rd32|rd64|r8|r16|r32|field|vendor_name|flag_names|base_class_name|sub_class_name|ptr_or_null|stack_location|flags_text|share_name|list_heading|interrupt_flag_names|class_description)(::|$)/
}

/^File '/ {
    file = $2; gsub(/'|:$/, "", file); sub(/^.*crates\//, "", file)
    if (!(file in seen)) { seen[file] = 1; order[++nf] = file }
    next
}

NF >= 10 && $(NF - 5) ~ /^[0-9]+$/ && $1 != "TOTAL" && file != "" {
    name = $1
    for (i = 2; i <= NF - 9; i++) name = name " " $i
    gsub(/\[[0-9a-f]+\]/, "", name)
    lines = $(NF - 5); missed = $(NF - 4)
    if (writer(name)) { wl[file] += lines; wm[file] += missed; next }
    rl[file] += lines; rm[file] += missed
    if (missed > 0) gaps[file] = gaps[file] sprintf("    %-72s %4d of %4d lines missed\n", name, missed, lines)
}

function pct(l, m) { return l ? sprintf("%6.1f%%", 100 * (l - m) / l) : "     -" }

END {
    printf "%-40s %12s %6s %8s %14s %8s\n", "file", "reader lines", "missed", "covered", "writer lines", "covered"
    for (i = 1; i <= nf; i++) {
        f = order[i]
        printf "%-40s %12d %6d %8s %14d %8s\n", f, rl[f], rm[f], pct(rl[f], rm[f]), wl[f], pct(wl[f], wm[f])
        tl += rl[f]; tm += rm[f]
    }
    printf "%-40s %12d %6d %8s\n\n", "all readers", tl, tm, pct(tl, tm)
    print "reader functions with missed lines:"
    for (i = 1; i <= nf; i++) if (order[i] in gaps) printf "  %s\n%s", order[i], gaps[order[i]]
}
