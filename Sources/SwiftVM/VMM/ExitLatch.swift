import SwiftVMDevices
import Glibc
import Synchronization
import SwiftVMHost
import SwiftVMMemory

/// Records the first reason the VM stops and wakes whoever waits for it.
///
/// Every thread (vCPUs, the event loop, device callbacks) reports through
/// here; only the first report counts, later ones are ignored.
final class ExitLatch: Sendable {
    private let reason = Mutex<VMExitReason?>(nil)
    let event: EventFD

    init() throws(SystemError) { event = try EventFD() }

    /// True once a reason has been recorded.
    var isSet: Bool { reason.withLock { $0 != nil } }

    func finish(_ newReason: VMExitReason) {
        let first = reason.withLock { current -> Bool in
            guard current == nil else { return false }
            current = newReason
            return true
        }
        if first { event.signal() }
    }

    /// Blocks until a reason is recorded and returns it.
    func wait() -> VMExitReason {
        while true {
            if let recorded = reason.withLock({ $0 }) { return recorded }
            event.drain()
        }
    }
}

/// An interrupt line backed by a KVM irqfd: each trigger injects one edge.
struct IRQFDLine: InterruptLine {
    let eventfd: EventFD
    func trigger() { eventfd.signal() }
}
