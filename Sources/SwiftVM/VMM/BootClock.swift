import Glibc
import Synchronization
import SwiftVMMemory

/// Measures the time from VMM start to the guest's boot-timer write
/// (Firecracker's boot-timer convention).
///
/// A front end that owns the process marks the process start with
/// `markProcessStart()` first thing, and every machine measures from there;
/// otherwise (a program that runs several VMs) each machine measures from
/// the moment it was built.
public struct BootClock: Sendable {
    private static let processStart = Mutex<(wall: timespec, cpu: timespec)?>(nil)
    private let start: (wall: timespec, cpu: timespec)

    /// Marks the start of the VMM process; call it before anything else.
    public static func markProcessStart() {
        processStart.withLock { value in
            if value == nil { value = (now(CLOCK_MONOTONIC), now(CLOCK_PROCESS_CPUTIME_ID)) }
        }
    }

    /// A clock from the process start if one was marked, else from now.
    init() {
        start = Self.processStart.withLock { $0 } ?? (Self.now(CLOCK_MONOTONIC), Self.now(CLOCK_PROCESS_CPUTIME_ID))
    }

    /// Logs wall and CPU time since the start. CPU time is the whole process's.
    func report() {
        let (wall, cpu) = start
        let wallMicros = micros(since: wall, clock: CLOCK_MONOTONIC)
        let cpuMicros = micros(since: cpu, clock: CLOCK_PROCESS_CPUTIME_ID)
        Log.info("Guest-boot-time = \(wallMicros) us \(wallMicros / 1000) ms, \(cpuMicros) CPU us \(cpuMicros / 1000) CPU ms")
    }

    private static func now(_ clock: clockid_t) -> timespec {
        var time = timespec()
        clock_gettime(clock, &time)
        return time
    }

    private func micros(since start: timespec, clock: clockid_t) -> Int {
        let end = Self.now(clock)
        return (end.tv_sec - start.tv_sec) * 1_000_000 + (end.tv_nsec - start.tv_nsec) / 1000
    }
}
