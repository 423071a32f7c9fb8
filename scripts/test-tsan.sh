#!/usr/bin/env bash
# Builds the tests with the thread sanitizer (in .build-tsan, apart from the
# ordinary .build) and runs the ones where threads meet: the virtio suites,
# the serial and console tests, and the integration tests that stop a running
# VM with a signal. The integration tests run the swiftvm binary found next to
# the test bundle, so they run the TSan build of it too.
#
#   scripts/test-tsan.sh                      the default selection below
#   scripts/test-tsan.sh --filter REGEX ...   only tests whose ID matches (repeatable;
#                                             IDs look like SwiftVMTests.BootTests/terminate())
#   scripts/test-tsan.sh ARGS...              other arguments go to `swift test`
#                                             (e.g. --no-parallel)
#   TSAN_OPTIONS=...                          added after this script's options (later wins)
#
# Any ThreadSanitizer report, from the test process or from a swiftvm it
# started, fails the run; the reports are printed at the end and kept in
# .build-tsan/tsan-reports/. Tests that need /dev/kvm skip without it.
#
# What TSan cannot see here: bytes of guest memory read and written through
# GuestMemory's generic load/store/read/write (ring entries, descriptors,
# buffers). Those copies go through Swift runtime and standard-library code
# that is not instrumented, so a race on them goes unreported; the ring
# indices (atomics), Swift variables and properties are checked.
#
# Synchronization.Mutex and TSan: on Linux a contended Mutex is handed over in
# the kernel (FUTEX_LOCK_PI, in the stdlib's uninstrumented _lockSlow and
# _unlockSlow), so TSan misses that synchronization and reports the state
# the Mutex guards as racing. A small preloaded library (built below with
# clang) wraps those slow paths and tells TSan about the handover
# (__tsan_release before the unlock, __tsan_acquire after the lock). Without
# clang it is left out, and a report whose two accesses both sit inside one
# Mutex's withLock is that false positive.
set -euo pipefail
self="$(cd "$(dirname "$0")" && pwd)/$(basename "$0")"
cd "$(dirname "$0")/.."

scratch=.build-tsan
reports="$PWD/$scratch/tsan-reports"
results="$PWD/$scratch/tsan-results.xml"
shim="$PWD/$scratch/tsan-mutex-shim.so"

filters=()
passthrough=()
while (($#)); do
    case "$1" in
        --filter) filters+=("${2:?--filter needs a pattern}"); shift 2 ;;
        --filter=*) filters+=("${1#--filter=}"); shift ;;
        *) passthrough+=("$1"); shift ;;
    esac
done
if ((${#filters[@]} == 0)); then
    filters=(
        # Tests/SwiftVMDevicesTests/Virtio: every suite there is named Virtio*.
        '^SwiftVMDevicesTests\.Virtio'
        '^SwiftVMDevicesTests\.Serial8250Tests/'
        # Integration: virtio devices under a real guest, the console, and the
        # stop paths (SIGTERM; SIGUSR1 register dumps then SIGTERM; SIGKILL in VirtioTests).
        '^SwiftVMTests\.VirtioTests/'
        '^SwiftVMTests\.ConsoleWatcherTests/'
        '^SwiftVMTests\.ConsoleEscapeTests/'
        # The event loop, pause and resume, two VMs in one process, and a
        # console nobody reads.
        '^SwiftVMTests\.LibraryTests/'
        '^SwiftVMTests\.StalledConsoleTests/stalledPipe'
        '^SwiftVMTests\.BootTests/(terminate|consoleInput)\('
        '^SwiftVMTests\.GuestDiagnosisTests/registersOnSIGUSR1\('
    )
fi
filter_args=()
for f in "${filters[@]}"; do filter_args+=(--filter "$f"); done

# The integration tests boot the project's test guest; build it up front so
# its build time does not land inside a test's time-out.
if [[ -f Tests/TestGuest/Makefile ]]; then
    make -s -C Tests/TestGuest || echo "test-tsan: the test guest did not build; the tests that boot it will fail" >&2
fi

start=$SECONDS
swift build --build-tests --sanitize=thread --scratch-path "$scratch" -Xswiftc -DSWIFTVM_SANITIZER
echo "test-tsan: build took $((SECONDS - start)) s"
binary="$scratch/debug/swiftvm"
[[ -x "$binary" ]] || { echo "test-tsan: $binary was not built" >&2; exit 1; }

# The Mutex shim (see the top of this file). Swift passes `self` in the
# swiftcall context register, hence clang's swiftcall/swift_context.
if [[ ! -f "$shim" || "$self" -nt "$shim" ]]; then
    rm -f "$shim"
    if command -v clang >/dev/null; then
        clang -shared -fPIC -O1 -o "$shim" -x c - <<'EOF' || rm -f "$shim"
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdint.h>
#include <stdlib.h>

/* Defined by the TSan runtime in sanitized processes only. */
extern void __tsan_acquire(void *address) __attribute__((weak));
extern void __tsan_release(void *address) __attribute__((weak));

#define LOCK_SLOW "$s15Synchronization12_MutexHandleV9_lockSlowyys6UInt32VF"
#define TRY_LOCK_SLOW "$s15Synchronization12_MutexHandleV12_tryLockSlowSbyF"
#define UNLOCK_SLOW "$s15Synchronization12_MutexHandleV11_unlockSlowyyF"
#define SWIFTCALL __attribute__((swiftcall))
#define SELF __attribute__((swift_context))

typedef SWIFTCALL void (*lock_slow_t)(uint32_t owner, SELF void *handle);
typedef SWIFTCALL _Bool (*try_lock_slow_t)(SELF void *handle);
typedef SWIFTCALL void (*unlock_slow_t)(SELF void *handle);

static void *next(const char *name) {
    void *function = dlsym(RTLD_NEXT, name);
    if (!function) abort(); /* only reached from a caller linked against it */
    return function;
}

SWIFTCALL void lock_slow(uint32_t owner, SELF void *handle) __asm__(LOCK_SLOW);
SWIFTCALL void lock_slow(uint32_t owner, SELF void *handle) {
    static lock_slow_t real;
    if (!real) real = (lock_slow_t)next(LOCK_SLOW);
    real(owner, handle);
    if (__tsan_acquire) __tsan_acquire(handle);
}

SWIFTCALL _Bool try_lock_slow(SELF void *handle) __asm__(TRY_LOCK_SLOW);
SWIFTCALL _Bool try_lock_slow(SELF void *handle) {
    static try_lock_slow_t real;
    if (!real) real = (try_lock_slow_t)next(TRY_LOCK_SLOW);
    _Bool locked = real(handle);
    if (locked && __tsan_acquire) __tsan_acquire(handle);
    return locked;
}

SWIFTCALL void unlock_slow(SELF void *handle) __asm__(UNLOCK_SLOW);
SWIFTCALL void unlock_slow(SELF void *handle) {
    static unlock_slow_t real;
    if (!real) real = (unlock_slow_t)next(UNLOCK_SLOW);
    if (__tsan_release) __tsan_release(handle);
    real(handle);
}
EOF
    fi
fi
if [[ -f "$shim" ]]; then
    export LD_PRELOAD="$shim${LD_PRELOAD:+:$LD_PRELOAD}"
else
    echo "test-tsan: no clang, so no Mutex shim: expect false reports on Mutex-guarded state" >&2
fi

rm -rf "$reports" "${results%.xml}"*.xml
mkdir -p "$reports"
# halt_on_error=0: keep going so one run shows every race; a report still makes
# the process exit with status 66 (TSan's exitcode) and is caught below.
# log_path: a swiftvm child's stderr is thrown away by the test harness, so
# every process writes its reports to files here instead (report.<pid>).
export TSAN_OPTIONS="halt_on_error=0 exitcode=66 second_deadlock_stack=1 log_path=$reports/report${TSAN_OPTIONS:+ $TSAN_OPTIONS}"
# Swift's crash backtracer and TSan fight over a crashing process: the
# backtracer cannot suspend TSan's threads, TSan fails an internal CHECK, and
# the crash ends with status 66 (like a race) and no Swift stack trace.
export SWIFT_BACKTRACE=enable=no

echo "test-tsan: swift test ${filter_args[*]} ${passthrough[*]:-}"
start=$SECONDS
status=0
swift test --skip-build --sanitize=thread --scratch-path "$scratch" -Xswiftc -DSWIFTVM_SANITIZER \
    --xunit-output "$results" "${filter_args[@]}" ${passthrough[@]+"${passthrough[@]}"} || status=$?
echo "test-tsan: tests took $((SECONDS - start)) s, swift test exited with $status"

# Which tests ran, from the JUnit file swift-testing writes next to $results.
for xml in "${results%.xml}"*.xml; do
    [[ -s "$xml" ]] || continue
    python3 - "$xml" <<'EOF' || true
import sys, xml.etree.ElementTree as ET
counts = {}
for case in ET.parse(sys.argv[1]).getroot().iter("testcase"):
    outcome = "FAIL" if case.find("failure") is not None else "SKIP" if case.find("skipped") is not None else "PASS"
    counts[outcome] = counts.get(outcome, 0) + 1
    print(f"  {outcome} {case.get('classname')}/{case.get('name')}")
if counts:
    print("test-tsan: " + ", ".join(f"{n} {k.lower()}" for k, n in sorted(counts.items())))
EOF
done

shopt -s nullglob
found=("$reports"/report*)
if ((${#found[@]})); then
    # A swiftvm child with a report exits with 66, which its test sees as a
    # wrong exit status; the report below is the real failure.
    echo "test-tsan: ThreadSanitizer reported problems in ${#found[@]} process(es):" >&2
    for report in "${found[@]}"; do
        echo "==== $report" >&2
        cat "$report" >&2
    done
    echo "test-tsan: in short:" >&2
    grep -h "^SUMMARY: ThreadSanitizer" "${found[@]}" | sort | uniq -c >&2 || true
    exit 1
fi
echo "test-tsan: no ThreadSanitizer reports"
exit "$status"
