import SwiftVMHost
import SwiftVMMemory

/// Why a microVM stopped.
public enum VMExitReason: Sendable, CustomStringConvertible {
    /// The guest reset the machine (i8042 command 0xFE, the `reboot=k` path, or a KVM reset event).
    case reset
    /// The guest powered the machine off.
    case powerOff
    /// A vCPU hit a triple fault: the guest could not handle an exception at all.
    case tripleFault(vcpu: Int, state: VCPUState?)
    /// KVM failed while running guest code, usually an instruction it could not emulate.
    case kvmInternalError(vcpu: Int, suberror: UInt32, data: [UInt64], state: VCPUState?)
    /// KVM could not enter the guest.
    case failEntry(vcpu: Int, reason: UInt64)
    /// The guest reported a crash through KVM (a system event).
    case guestCrash(vcpu: Int)
    /// The VMM was told to stop from outside (a signal).
    case signal(Int32)
    /// The person at the console asked to quit (Ctrl-A x).
    case userQuit
    /// The embedding program stopped the VM (`MicroVM.stop`), with its reason.
    case stopped(String)
    /// The VMM itself failed while the guest ran.
    case vmmError(String)

    /// The documented exit status of `swiftvm run` for this reason (see docs/exit-codes.md).
    public var exitCode: Int32 {
        switch self {
        case .reset, .powerOff: ExitStatus.success
        case .tripleFault: ExitStatus.guestTripleFault
        case .kvmInternalError: ExitStatus.kvmInternalError
        case .failEntry: ExitStatus.kvmFailEntry
        case .guestCrash: ExitStatus.guestCrash
        case .signal(let number): 128 + number
        case .userQuit: ExitStatus.userQuit
        case .stopped: ExitStatus.stoppedByHost
        case .vmmError: ExitStatus.vmmRuntimeError
        }
    }

    public var isClean: Bool { exitCode == ExitStatus.success }

    public var description: String {
        switch self {
        case .reset:
            return "the guest reset the machine"
        case .powerOff:
            return "the guest powered off"
        case .tripleFault(let vcpu, let state):
            return "guest crash: vCPU \(vcpu) hit a triple fault (an exception the guest could not handle)"
                + VMExitReason.describe(state, withFix: false)
        case .kvmInternalError(let vcpu, let suberror, let data, let state):
            let what = suberror == 1
                ? "KVM could not emulate an instruction (suberror 1, KVM_INTERNAL_ERROR_EMULATION)"
                : "KVM internal error, suberror \(suberror)"
            let extra = data.isEmpty ? "" : "; data " + data.map { "0x" + String($0, radix: 16) }.joined(separator: " ")
            return "guest crash: vCPU \(vcpu): \(what)\(extra)"
                + VMExitReason.describe(state, withFix: suberror == 1)
        case .failEntry(let vcpu, let reason):
            return "KVM could not enter vCPU \(vcpu): hardware entry failure reason 0x\(String(reason, radix: 16))"
        case .guestCrash(let vcpu):
            return "the guest reported a crash (KVM system event on vCPU \(vcpu))"
        case .signal(let number):
            return "stopped by signal \(number)"
        case .userQuit:
            return "stopped from the console (Ctrl-A x)"
        case .stopped(let why):
            return "stopped: \(why)"
        case .vmmError(let message):
            return "VMM failure: \(message)"
        }
    }

    /// The registers and instruction of a crash; `withFix` adds what gets a
    /// guest past an instruction this host's KVM cannot emulate.
    private static func describe(_ state: VCPUState?, withFix: Bool) -> String {
        guard let state else { return "" }
        let registers = state.registers
        let instruction = state.instruction
        var text = "\n  rip 0x\(hex(registers.rip))"
        if let symbol = state.symbol { text += " <\(symbol)>" }
        if let physical = registers.ripPhysical { text += " (guest-physical 0x\(hex(physical)))" }
        text += " rsp 0x\(hex(registers.rsp)) rflags 0x\(hex(registers.rflags))"
        text += "\n  cr0 0x\(hex(registers.cr0)) cr3 0x\(hex(registers.cr3)) cr4 0x\(hex(registers.cr4)) efer 0x\(hex(registers.efer))"
        if let instruction, !instruction.isEmpty {
            text += "\n  instruction bytes at rip: " + instruction.map { byte in
                let digits = String(byte, radix: 16)
                return digits.count == 1 ? "0" + digits : digits
            }.joined(separator: " ")
            if let hint = EmulationHint.decode(instruction) {
                text += " (\(hint.mnemonic))"
                if withFix { text += "\n  this KVM cannot emulate \(hint.mnemonic): \(hint.fix)" }
            }
        }
        return text
    }

    private static func hex(_ value: UInt64) -> String { String(value, radix: 16) }

    /// The crashed vCPU's state, for the reasons that carry one.
    var crashState: VCPUState? {
        switch self {
        case .tripleFault(_, let state), .kvmInternalError(_, _, _, let state): state
        default: nil
        }
    }

    /// The same reason with `name` filling in the crashed vCPU's symbol.
    func symbolized(_ name: (UInt64) -> String?) -> VMExitReason {
        switch self {
        case .tripleFault(let vcpu, var state?):
            state.symbol = name(state.registers.rip)
            return .tripleFault(vcpu: vcpu, state: state)
        case .kvmInternalError(let vcpu, let suberror, let data, var state?):
            state.symbol = name(state.registers.rip)
            return .kvmInternalError(vcpu: vcpu, suberror: suberror, data: data, state: state)
        default:
            return self
        }
    }
}

/// The exit statuses of `swiftvm`, one per kind of outcome.
///
/// 64–78 follow BSD sysexits.h, so scripts can tell a usage error from a
/// broken input file from a host without KVM; 80–85 are guest failures and
/// stops. docs/exit-codes.md lists every one; a test holds the two together.
public enum ExitStatus {
    /// The guest rebooted or powered off cleanly.
    public static let success: Int32 = 0
    /// The VMM failed while the guest was running.
    public static let vmmRuntimeError: Int32 = 1
    /// Bad command-line arguments or configuration (EX_USAGE).
    public static let usage: Int32 = 64
    /// An input file is unusable: wrong kernel format, truncated image, malformed template (EX_DATAERR).
    public static let badInput: Int32 = 65
    /// An input file is missing or unreadable (EX_NOINPUT).
    public static let missingInput: Int32 = 66
    /// KVM is unavailable: no /dev/kvm, no permission, wrong API version, missing capability (EX_UNAVAILABLE).
    public static let kvmUnavailable: Int32 = 69
    /// An internal VMM error while building the machine (EX_SOFTWARE).
    public static let internalError: Int32 = 70
    /// The host refused a resource: memory, threads, file descriptors (EX_OSERR).
    public static let hostResource: Int32 = 71
    /// A check could not decide within its bounds (`swiftvm inspect rootfs` on
    /// an image that needs more work than one inspection may do) (EX_TEMPFAIL).
    public static let undecided: Int32 = 75
    /// A vCPU triple-faulted.
    public static let guestTripleFault: Int32 = 80
    /// KVM failed to emulate or run guest code (KVM_EXIT_INTERNAL_ERROR).
    public static let kvmInternalError: Int32 = 81
    /// KVM could not enter the guest (KVM_EXIT_FAIL_ENTRY).
    public static let kvmFailEntry: Int32 = 82
    /// The guest reported a crash through a KVM system event.
    public static let guestCrash: Int32 = 83
    /// Quit from the console with Ctrl-A x.
    public static let userQuit: Int32 = 84
    /// Stopped by the program embedding the VMM (or a selftest watchdog).
    public static let stoppedByHost: Int32 = 85
    /// A thread made a system call its seccomp filter does not allow
    /// (Firecracker's `BadSyscall`; docs/security.md).
    public static let badSyscall: Int32 = 148
    /// Killed by signal N: 128 + N, as shells report it.
}
