import Synchronization
import SwiftVMDevices
import SwiftVMHost
import SwiftVMDevices
import SwiftVMMemory

/// The `KVM_RUN` loop of one vCPU, run on that vCPU's own thread.
///
/// Port I/O and MMIO exits are served synchronously through the buses;
/// anything that ends the VM is reported to the exit latch.
struct VCPURunner: Sendable {
    let vcpu: VCPU
    let portBus: Bus
    let mmioBus: Bus
    let memory: GuestMemory
    let latch: ExitLatch
    let mailbox: VCPUStateMailbox
    let gate: PauseGate
    /// Exits by reason, for metrics.
    let counters: DeviceCounters

    enum Exit: String, CaseIterable {
        case ioIn = "exit_io_in", ioOut = "exit_io_out", mmioRead = "exit_mmio_read", mmioWrite = "exit_mmio_write"
        case halt = "exit_hlt", interrupted = "exit_interrupted", shutdown = "exit_shutdown"
        case systemEvent = "exit_system_event", internalError = "exit_internal_error", failEntry = "exit_fail_entry"
        case other = "exit_other"
    }

    func run() {
        Signals.unblockVCPUKick()
        Signals.keepSIGPIPEOffThisThread()
        // A request for registers that comes as the VM stops is answered too.
        defer { answerIfAsked() }
        while !latch.isSet {
            if gate.isPaused {
                answerIfAsked()
                gate.hold(until: latch)
                // Cleared before the loop looks at the latch again, so a stop
                // that comes now still finds immediate_exit set.
                vcpu.cancelExitRequest()
                continue
            }
            let exit: VCPUExit
            do { exit = try vcpu.run() } catch {
                latch.finish(.vmmError("\(error)"))
                return
            }
            counters.add(Self.kind(of: exit))
            switch exit {
            case .io(let port, let isWrite, let data, let count):
                let width = count > 0 ? data.count / count : 0
                for i in 0..<count {
                    let slice = UnsafeMutableRawBufferPointer(rebasing: data[(i * width)..<((i + 1) * width)])
                    serve(portBus, address: UInt64(port), isWrite: isWrite, data: slice, space: "port")
                }
            case .mmio(let address, let isWrite, let data):
                serve(mmioBus, address: address, isWrite: isWrite, data: data, space: "MMIO")
            case .interrupted:
                answerIfAsked()
            case .halt:
                // With the in-kernel LAPIC, HLT never reaches user space; if it
                // does, the guest is stopped for good.
                latch.finish(.powerOff)
            case .shutdown:
                latch.finish(.tripleFault(vcpu: vcpu.id, state: VCPURunner.state(of: vcpu, memory: memory)))
            case .systemEvent(let type):
                switch type {
                case 1: latch.finish(.powerOff)  // KVM_SYSTEM_EVENT_SHUTDOWN
                case 2: latch.finish(.reset)  // KVM_SYSTEM_EVENT_RESET
                default: latch.finish(.guestCrash(vcpu: vcpu.id))  // KVM_SYSTEM_EVENT_CRASH and newer kinds
                }
            case .failEntry(let reason, _):
                latch.finish(.failEntry(vcpu: vcpu.id, reason: reason))
            case .internalError(let suberror, let data):
                latch.finish(.kvmInternalError(
                    vcpu: vcpu.id, suberror: suberror, data: data, state: VCPURunner.state(of: vcpu, memory: memory)))
            case .exception(let number, let errorCode):
                latch.finish(.vmmError("vCPU \(vcpu.id): unhandled guest exception \(number), error code \(errorCode)"))
            case .unknown(let reason):
                latch.finish(.vmmError("vCPU \(vcpu.id): unexpected KVM exit reason \(reason)"))
            }
        }
    }

    private func serve(_ bus: Bus, address: UInt64, isWrite: Bool, data: UnsafeMutableRawBufferPointer, space: String) {
        let claimed = isWrite ? bus.write(address, from: UnsafeRawBufferPointer(data)) : bus.read(address, into: data)
        if !claimed, Log.isEnabled(.debug) {
            let hex = String(address, radix: 16)
            Log.debug("vCPU \(vcpu.id): \(isWrite ? "write to" : "read from") unclaimed \(space) 0x\(hex) (\(data.count) bytes)")
        }
    }

    static func kind(of exit: VCPUExit) -> Exit {
        switch exit {
        case .io(_, let isWrite, _, _): isWrite ? .ioOut : .ioIn
        case .mmio(_, let isWrite, _): isWrite ? .mmioWrite : .mmioRead
        case .halt: .halt
        case .interrupted: .interrupted
        case .shutdown: .shutdown
        case .systemEvent: .systemEvent
        case .internalError: .internalError
        case .failEntry: .failEntry
        case .exception, .unknown: .other
        }
    }

    /// Answers a request for this vCPU's registers (see `VCPUStateMailbox`),
    /// and lets the next `KVM_RUN` enter the guest again.
    private func answerIfAsked() {
        guard mailbox.isAsked(vcpu.id) else { return }
        // Cleared before the loop looks at the latch again (see run()).
        vcpu.cancelExitRequest()
        if let state = VCPURunner.state(of: vcpu, memory: memory) { mailbox.answer(state) }
    }

    /// The vCPU's registers and the bytes at RIP; call only while it is not in `KVM_RUN`.
    static func state(of vcpu: VCPU, memory: GuestMemory) -> VCPUState? {
        guard let snapshot = try? vcpu.snapshot() else { return nil }
        var bytes: [UInt8]?
        if let physical = snapshot.ripPhysical {
            // Fewer than 15 bytes when RIP sits near the end of RAM.
            for count in stride(from: 15, through: 1, by: -1) {
                if let read = try? memory.read(at: GuestAddress(physical), count: count) {
                    bytes = read
                    break
                }
            }
        }
        return VCPUState(vcpu: vcpu.id, registers: snapshot, instruction: bytes)
    }
}

/// Holds vCPU threads outside `KVM_RUN` while the VM is paused.
///
/// `close` marks the VM paused; each vCPU, kicked out of `KVM_RUN`, sees
/// that and waits in `hold` until `open` (resume) or `release` (stop).
/// `waitUntilAllHeld` tells the pauser when every vCPU is out.
final class PauseGate: Sendable {
    private let paused = Atomic<Bool>(false)
    private let held = Mutex(0)
    private let vcpuCount: Int
    /// Readable while the gate is open: held vCPUs poll it.
    private let opened: EventFD
    /// Signalled when the last vCPU is held.
    private let allHeld: EventFD

    init(vcpuCount: Int) throws(SystemError) {
        self.vcpuCount = vcpuCount
        opened = try EventFD(nonBlocking: true)
        allHeld = try EventFD(nonBlocking: true)
        opened.signal()
    }

    var isPaused: Bool { paused.load(ordering: .acquiring) }

    func close() {
        allHeld.drain()
        opened.drain()
        paused.store(true, ordering: .releasing)
    }

    func open() {
        paused.store(false, ordering: .releasing)
        opened.signal()
    }

    /// Wakes held vCPUs for good, so that they see the VM stopping.
    func release() { open() }

    /// Called by a vCPU thread that found the gate closed.
    func hold(until latch: ExitLatch) {
        let last = held.withLock { count -> Bool in
            count += 1
            return count == vcpuCount
        }
        if last { allHeld.signal() }
        while isPaused && !latch.isSet {
            _ = opened.wait(timeoutMilliseconds: 100)
        }
        held.withLock { $0 -= 1 }
    }

    func waitUntilAllHeld(timeoutMilliseconds: Int32) -> Bool {
        allHeld.wait(timeoutMilliseconds: timeoutMilliseconds)
    }
}
