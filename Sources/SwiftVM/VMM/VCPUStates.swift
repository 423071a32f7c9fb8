import Synchronization
import SwiftVMHost

/// The registers of one vCPU at a moment, with the instruction bytes at RIP.
public struct VCPUState: Sendable {
    public var vcpu: Int
    public var registers: VCPUSnapshot
    /// Up to 15 bytes at RIP, when the guest's page tables map it.
    public var instruction: [UInt8]?
    /// The kernel symbol RIP is in (`native_safe_halt+0x6/0x10`), when the
    /// kernel file has a symbol table.
    public var symbol: String? = nil
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
