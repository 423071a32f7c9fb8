import Synchronization
import SwiftVMHost

/// The registers of one vCPU at a moment, with the instruction bytes at RIP.
public struct VCPUState: Sendable {
    public var vcpu: Int
    var registers: VCPUSnapshot
    /// Up to 15 bytes at RIP, when the guest's page tables map it.
    public var instruction: [UInt8]?
    /// The kernel symbol RIP is in (`native_safe_halt+0x6/0x10`), when the
    /// kernel file has a symbol table.
    public var symbol: String? = nil

    public var rip: UInt64 { registers.rip }
    public var rsp: UInt64 { registers.rsp }
    public var rflags: UInt64 { registers.rflags }
    public var cr0: UInt64 { registers.cr0 }
    public var cr3: UInt64 { registers.cr3 }
    public var cr4: UInt64 { registers.cr4 }
    public var efer: UInt64 { registers.efer }
    /// The guest-physical address of RIP, when the guest's page tables map it.
    public var ripPhysical: UInt64? { registers.ripPhysical }
    /// "kernel mode", "user mode, CPL 3" or "real mode".
    public var mode: String { registers.modeDescription }
    /// Why the vCPU is not running guest code, when it is not: halted, not
    /// started (waiting for INIT/SIPI).
    public var waiting: String? { registers.mpStateDescription }
    /// The instruction at RIP when it is one an emulating KVM cannot run.
    public var emulationHint: EmulationHint? { instruction.flatMap(EmulationHint.decode) }
}

/// Asks running vCPU threads for their registers: the asker marks the vCPUs
/// and kicks them out of `KVM_RUN`; each vCPU thread answers before it
/// enters the guest again (KVM reads registers only between runs).
final class VCPUStateMailbox: Sendable {
    private struct State {
        var wanted: Set<Int> = []
        var answers: [Int: VCPUState] = [:]
    }
    private let state = Mutex(State())
    private let answered: EventFD

    init() throws(SystemError) { answered = try EventFD(nonBlocking: true) }

    /// Marks `vcpus` as asked; answers from an earlier request are dropped.
    func ask(_ vcpus: [Int]) {
        state.withLock {
            $0.wanted = Set(vcpus)
            $0.answers = [:]
        }
        answered.drain()
    }

    /// True when `vcpu` has been asked and has not answered yet.
    func isAsked(_ vcpu: Int) -> Bool { state.withLock { $0.wanted.contains(vcpu) } }

    /// Called on the vCPU's own thread.
    func answer(_ answer: VCPUState) {
        let done = state.withLock { state -> Bool in
            guard state.wanted.remove(answer.vcpu) != nil else { return false }
            state.answers[answer.vcpu] = answer
            return state.wanted.isEmpty
        }
        if done { answered.signal() }
    }

    /// Waits up to `milliseconds` for every asked vCPU; returns the answers
    /// and the vCPUs that did not answer.
    func collect(timeoutMilliseconds milliseconds: Int32) -> (states: [VCPUState], silent: [Int]) {
        _ = answered.wait(timeoutMilliseconds: milliseconds)
        return state.withLock { state in
            defer { state = State() }
            return (state.answers.values.sorted { $0.vcpu < $1.vcpu }, state.wanted.sorted())
        }
    }
}
