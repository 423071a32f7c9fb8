/// One CPUID result as KVM exchanges it (`struct kvm_cpuid_entry2`).
///
/// The VMM gets a list of these from `KVM_GET_SUPPORTED_CPUID`, rewrites them
/// for each vCPU and hands them back with `KVM_SET_CPUID2`.
public struct CPUIDEntry: Equatable, Sendable {
    /// `KVM_CPUID_FLAG_SIGNIFCANT_INDEX`: the result depends on ECX at entry, so
    /// KVM must match `index` too (leaves 0x4, 0x7, 0xB, 0xD, 0x1F, ...).
    public static let significantIndexFlag: UInt32 = 1 << 0

    /// The leaf: EAX at entry to CPUID.
    public var function: UInt32
    /// The subleaf: ECX at entry; only meaningful with `significantIndexFlag`.
    public var index: UInt32
    public var flags: UInt32
    public var eax: UInt32
    public var ebx: UInt32
    public var ecx: UInt32
    public var edx: UInt32

    public init(
        function: UInt32, index: UInt32 = 0, flags: UInt32 = 0,
        eax: UInt32 = 0, ebx: UInt32 = 0, ecx: UInt32 = 0, edx: UInt32 = 0
    ) {
        self.function = function
        self.index = index
        self.flags = flags
        self.eax = eax
        self.ebx = ebx
        self.ecx = ecx
        self.edx = edx
    }

    /// Whether KVM matches this entry on the subleaf as well as the leaf.
    public var hasSignificantIndex: Bool { flags & Self.significantIndexFlag != 0 }

    /// Reads or writes one output register by name, as templates address them.
    public subscript(register: CPUIDRegister) -> UInt32 {
        get {
            switch register {
            case .eax: eax
            case .ebx: ebx
            case .ecx: ecx
            case .edx: edx
            }
        }
        set {
            switch register {
            case .eax: eax = newValue
            case .ebx: ebx = newValue
            case .ecx: ecx = newValue
            case .edx: edx = newValue
            }
        }
    }

    /// Whether `bit` of `register` is set.
    public func bit(_ bit: Int, of register: CPUIDRegister) -> Bool {
        self[register] & (1 << UInt32(bit)) != 0
    }

    /// Sets or clears `bit` of `register`.
    public mutating func setBit(_ bit: Int, of register: CPUIDRegister, to on: Bool) {
        let mask: UInt32 = 1 << UInt32(bit)
        self[register] = on ? self[register] | mask : self[register] & ~mask
    }

    /// Replaces bits `high...low` of `register` with the low bits of `value`.
    public mutating func setField(_ high: Int, _ low: Int, of register: CPUIDRegister, to value: UInt32) {
        let width = UInt32(high - low + 1)
        let ones: UInt32 = width >= 32 ? .max : (1 << width) - 1
        let mask = ones << UInt32(low)
        self[register] = (self[register] & ~mask) | ((value << UInt32(low)) & mask)
    }

    /// Bits `high...low` of `register`, shifted down.
    public func field(_ high: Int, _ low: Int, of register: CPUIDRegister) -> UInt32 {
        let width = UInt32(high - low + 1)
        let ones: UInt32 = width >= 32 ? .max : (1 << width) - 1
        return (self[register] >> UInt32(low)) & ones
    }
}

/// An output register of CPUID; the raw values are the names templates use.
public enum CPUIDRegister: String, CaseIterable, Sendable {
    case eax, ebx, ecx, edx
}
