# What scripts/fuzz.sh and scripts/fuzz-campaign.sh share (sourced, from the repository root):
# the target list, the inputs every target starts from, its input size limit.

# Every fuzz target: one file each under fuzz/fuzz_targets/ (fuzz/Cargo.toml names the same).
all_targets=$(find fuzz/fuzz_targets -name '*.rs' -printf '%f\n' | sed 's/\.rs$//' | sort | tr '\n' ' ')

# The directories of committed inputs target $1 must run clean on, one a line: its generated
# seeds (fuzz/seeds/TARGET), for the text targets the doctor's test fixtures, the seeds
# scripts/fuzz-check-seeds.sh wrote into $2/check/TARGET if it ran, and its
# regression inputs fuzz/regressions/TARGET-* (copied into $2/regressions/TARGET, since
# libFuzzer takes directories).
kept_inputs() {
    local t=$1 reg="$2/regressions/$1"
    [ -d "fuzz/seeds/$t" ] && echo "fuzz/seeds/$t"
    case $t in
        doctor_parse | win_text) echo "crates/virq-doctor/tests/fixtures" ;;
    esac
    # What the simulated machine writes, when scripts/fuzz-check-seeds.sh has run (campaigns).
    [ -d "$2/check/$t" ] && echo "$2/check/$t"
    rm -rf "$reg" && mkdir -p "$reg"
    if compgen -G "fuzz/regressions/$t-*" >/dev/null; then
        cp fuzz/regressions/"$t"-* "$reg"/
        echo "$reg"
    fi
    return 0
}

# The longest input libFuzzer makes for target $1: log files are long, register traffic short.
max_len() {
    case $1 in
        doctor_parse | win_text | judge) echo 65536 ;;
        *) echo 8192 ;;
    esac
}

# Fails (naming it) when a regression input's name matches no target: it would never run.
check_regression_names() {
    local f name t owner
    for f in fuzz/regressions/*; do
        [ -e "$f" ] || continue
        name=$(basename "$f")
        owner=""
        for t in $all_targets; do
            case $name in "$t"-*) owner=$t ;; esac
        done
        if [ -z "$owner" ]; then
            echo "$f is not named TARGET-what for a target of: $all_targets" >&2
            return 1
        fi
    done
}
