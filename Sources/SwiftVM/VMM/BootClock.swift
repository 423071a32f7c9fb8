import Glibc
import Synchronization
import SwiftVMMemory

/// Measures the time from VMM start to the guest's boot-timer write
/// (Firecracker's boot-timer convention).
public enum BootClock {
    private static let start = Mutex<(wall: timespec, cpu: timespec)?>(nil)

    /// Marks the VMM's start. Front ends call this first thing; otherwise the
    /// first machine built marks it.
    public static func markStart() {
        start.withLock { value in
            if value == nil { value = (now(CLOCK_MONOTONIC), now(CLOCK_PROCESS_CPUTIME_ID)) }
        }
    }

    /// Logs wall and CPU time since `markStart`.
    static func report() {
        guard let (wall, cpu) = start.withLock({ $0 }) else { return }
        let wallMicros = micros(since: wall, clock: CLOCK_MONOTONIC)
        let cpuMicros = micros(since: cpu, clock: CLOCK_PROCESS_CPUTIME_ID)
        Log.info("Guest-boot-time = \(wallMicros) us \(wallMicros / 1000) ms, \(cpuMicros) CPU us \(cpuMicros / 1000) CPU ms")
    }

    private static func now(_ clock: clockid_t) -> timespec {
        var time = timespec()
        clock_gettime(clock, &time)
        return time
    }

    private static func micros(since start: timespec, clock: clockid_t) -> Int {
        let end = now(clock)
        return (end.tv_sec - start.tv_sec) * 1_000_000 + (end.tv_nsec - start.tv_nsec) / 1000
    }
}
