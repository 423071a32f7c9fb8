#!/usr/bin/env bash
# Fuzzes swiftvm's parsers of untrusted input with libFuzzer (docs/fuzzing.md).
#
#   scripts/fuzz.sh --list                 the targets and what each one feeds
#   scripts/fuzz.sh TARGET SECONDS [ARGS]  fuzz one target; ARGS go to libFuzzer
#   scripts/fuzz.sh --all SECONDS          each target in turn, SECONDS each
#   scripts/fuzz.sh --build                only build the fuzzer
#
# The fuzzer is built with -sanitize=fuzzer,address in .build-fuzz (never
# .build). Each run starts from the committed seeds (Tests/Fuzz/Corpus/TARGET)
# and grows a working corpus in .build-fuzz/corpus/TARGET, kept between runs.
# A crash ends the run with a non-zero status and names the file that holds
# the crashing input (.build-fuzz/crashes/TARGET/); copy it to
# Tests/Fuzz/Regressions/TARGET/ and `swift test --filter SwiftVMFuzzTests`
# replays it from then on.
#
#   FUZZ_JOBS_NICE=N     nice level for the fuzzer (default 19)
#   FUZZ_RSS_LIMIT_MB=N  libFuzzer's -rss_limit_mb (default 2048)
set -euo pipefail
cd "$(dirname "$0")/.."

scratch=.build-fuzz
fuzz_root=Tests/Fuzz
nice_level=${FUZZ_JOBS_NICE:-19}
rss_limit=${FUZZ_RSS_LIMIT_MB:-2048}

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2; exit 2; }

build() {
    local start=$SECONDS
    # swiftc keeps only the last -sanitize= flag's coverage: given as two flags
    # (as SwiftPM passes them) the Swift code would get ASan but no coverage
    # counters, so the coverage is asked for explicitly.
    # SWIFTVM_FUZZ: the driver exports libFuzzer's entry points instead of a main.
    # SWIFTVM_TESTABLE_API and -enable-testing: the API targets reach the
    # controller and config file reader, which are internal to SwiftVMAPI.
    local flags=(
        --sanitize=fuzzer --sanitize=address
        -Xswiftc -sanitize-coverage=edge,indirect-calls,trace-cmp,inline-8bit-counters,pc-table
        -Xswiftc -DSWIFTVM_FUZZ -Xswiftc -DSWIFTVM_TESTABLE_API -Xswiftc -enable-testing
    )
    # SwiftPM does not always rebuild a module when only -Xswiftc flags
    # change, and one module left with other coverage flags stops libFuzzer;
    # so a change of flags starts the build over.
    local stamp="$scratch/fuzz-flags"
    if [[ -f $stamp && "$(cat "$stamp")" != "${flags[*]}" ]]; then
        echo "fuzz: build flags changed, rebuilding from scratch" >&2
        rm -rf "$scratch/x86_64-unknown-linux-gnu" "$scratch/release" "$scratch/release.yaml"
    fi
    mkdir -p "$scratch"
    echo "${flags[*]}" >"$stamp"
    nice -n "$nice_level" swift build -c release --product swiftvm-fuzz --scratch-path "$scratch" "${flags[@]}" \
        2> >(grep -v "Cannot export local symbol" >&2)
    echo "fuzz: build took $((SECONDS - start)) s" >&2
    binary="$scratch/release/swiftvm-fuzz"
    [[ -x $binary ]] || { echo "fuzz: $binary was not built" >&2; exit 1; }
}

# Target names and -max_len values, from the targets' own table (Tests/Fuzz/Targets/FuzzTargets.swift).
targets() { sed -n 's/.*name: "\([a-z0-9-]*\)", summary.*/\1/p' "$fuzz_root/Targets/FuzzTargets.swift"; }
max_len() {
    awk -v t="$1" '$0 ~ "name: \"" t "\"" { found = 1 } found && /maxLength:/ {
        sub(/.*maxLength: */, ""); sub(/,.*/, ""); print; exit }' "$fuzz_root/Targets/FuzzTargets.swift"
}

list() {
    awk '/name: "/ { match($0, /name: "[^"]*"/); n = substr($0, RSTART + 7, RLENGTH - 8)
                     match($0, /summary: "[^"]*"/); s = substr($0, RSTART + 10, RLENGTH - 11)
                     printf "%-16s %s\n", n, s }' "$fuzz_root/Targets/FuzzTargets.swift"
}

fuzz_one() {
    local target=$1 seconds=$2
    shift 2
    targets | grep -qx -- "$target" || { echo "fuzz: no target '$target' (scripts/fuzz.sh --list)" >&2; exit 2; }
    local corpus="$scratch/corpus/$target" crashes="$scratch/crashes/$target"
    local log="$scratch/logs/$target.log"
    mkdir -p "$corpus" "$crashes" "$(dirname "$log")"
    local seeds=("$fuzz_root/Corpus/$target")
    [[ -d $fuzz_root/Regressions/$target ]] && seeds+=("$fuzz_root/Regressions/$target")
    echo "fuzz: $target for $seconds s (max_len $(max_len "$target")), log in $log" >&2
    local status=0
    # The first corpus folder receives new inputs; the committed ones are only read.
    SWIFTVM_FUZZ_TARGET=$target SWIFT_BACKTRACE=enable=no \
    ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=0:handle_abort=1:allocator_may_return_null=1} \
        nice -n "$nice_level" "$binary" "$corpus" "${seeds[@]}" \
        -max_total_time="$seconds" -max_len="$(max_len "$target")" -rss_limit_mb="$rss_limit" \
        -timeout=10 -print_final_stats=1 -artifact_prefix="$crashes/" "$@" >"$log" 2>&1 || status=$?
    # libFuzzer's closing lines: totals, executions per second, coverage, corpus.
    grep -E '^(stat::|#[0-9]+ +DONE|Done [0-9]+ runs)' "$log" || true
    grep -E '^#[0-9]+' "$log" | tail -n1 || true
    if ((status != 0)); then
        echo "fuzz: $target FAILED (status $status):" >&2
        grep -E 'ERROR: |SUMMARY: |Fatal error|Test unit written to|^artifact_prefix|deadly signal|out-of-memory|timeout' "$log" >&2 || tail -n 40 "$log" >&2
        local saved
        saved=$(sed -n 's/.*Test unit written to \(.*\)/\1/p' "$log" | tail -n1)
        [[ -n $saved ]] && echo "fuzz: the crashing input is in $saved; replay it with $binary $saved" >&2
        return "$status"
    fi
}

(($#)) || usage
case "$1" in
    --list) list ;;
    --build) build ;;
    --all)
        seconds=${2:?--all needs SECONDS}
        build
        failed=()
        for target in $(targets); do
            fuzz_one "$target" "$seconds" || failed+=("$target")
        done
        if ((${#failed[@]})); then
            echo "fuzz: crashes in: ${failed[*]}" >&2
            exit 1
        fi
        echo "fuzz: every target ran $seconds s without a crash" >&2
        ;;
    -h|--help) usage ;;
    -*) usage ;;
    *)
        target=$1 seconds=${2:?usage: scripts/fuzz.sh TARGET SECONDS}
        shift 2
        targets | grep -qx -- "$target" || { echo "fuzz: no target '$target' (scripts/fuzz.sh --list)" >&2; exit 2; }
        build
        fuzz_one "$target" "$seconds" "$@"
        ;;
esac
