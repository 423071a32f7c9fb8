/// Bit patterns for one CPUID leaf/subleaf (a Firecracker `cpuid_modifiers` entry).
public struct CPUIDModifier: Equatable, Sendable {
    public var leaf: UInt32
    public var subleaf: UInt32
    /// Replaces the matched entry's KVM flags, as Firecracker does.
    public var flags: UInt32
    /// Applied in order; a register named twice gets both patterns.
    public var registers: [(register: CPUIDRegister, bitmap: RegisterBitmap)]

    public init(leaf: UInt32, subleaf: UInt32 = 0, flags: UInt32 = 0,
                registers: [(register: CPUIDRegister, bitmap: RegisterBitmap)]) {
        self.leaf = leaf
        self.subleaf = subleaf
        self.flags = flags
        self.registers = registers
    }

    public static func == (lhs: CPUIDModifier, rhs: CPUIDModifier) -> Bool {
        lhs.leaf == rhs.leaf && lhs.subleaf == rhs.subleaf && lhs.flags == rhs.flags
            && lhs.registers.count == rhs.registers.count
            && zip(lhs.registers, rhs.registers).allSatisfy { $0.register == $1.register && $0.bitmap == $1.bitmap }
    }

    /// Whether this modifier targets `entry`: the subleaf only counts when KVM
    /// itself distinguishes subleaves of the entry's leaf.
    public func matches(_ entry: CPUIDEntry) -> Bool {
        entry.function == leaf && (!entry.hasSignificantIndex || entry.index == subleaf)
    }
}

/// A bit pattern for one MSR (a Firecracker `msr_modifiers` entry).
public struct MSRModifier: Equatable, Sendable {
    public var address: UInt32
    public var bitmap: RegisterBitmap

    public init(address: UInt32, bitmap: RegisterBitmap) {
        self.address = address
        self.bitmap = bitmap
    }
}

/// A custom CPU template: what the guest sees of the host CPU, narrowed or
/// adjusted bit by bit.
///
/// Apply it to KVM's supported CPUID before `CPUIDNormalizer`, so the
/// topology and identification fields the VMM must own win over the template
/// (Firecracker's order, docs/cpu_templates/cpuid-normalization.md).
///
/// A template may name one CPUID leaf and subleaf, or one MSR, in more than
/// one modifier (the file reader refuses it; code that builds a template may
/// still do it): the modifiers then apply in order, each to the result of the
/// ones before, and the last one's CPUID flags win. Nothing here traps on such
/// repeats.
public struct CPUTemplate: Equatable, Sendable {
    /// The most MSRs a template may modify: KVM_GET_MSRS and KVM_SET_MSRS
    /// refuse 256 or more entries in one call (MAX_IO_MSRS in Linux's
    /// arch/x86/kvm/x86.c), and the VMM reads and writes them in one call each.
    public static let maximumMSRCount = 255

    public var cpuidModifiers: [CPUIDModifier]
    public var msrModifiers: [MSRModifier]

    public init(cpuidModifiers: [CPUIDModifier] = [], msrModifiers: [MSRModifier] = []) {
        self.cpuidModifiers = cpuidModifiers
        self.msrModifiers = msrModifiers
    }

    /// The MSRs the VMM must read back from KVM before `applyMSRs`, each
    /// once, in the order the template first names them.
    public var msrAddresses: [UInt32] {
        var seen = Set<UInt32>()
        return msrModifiers.map(\.address).filter { seen.insert($0).inserted }
    }

    /// `entries` with every modifier applied to the entries it matches.
    ///
    /// A modifier whose leaf (or, for indexed leaves, subleaf) the host does not
    /// offer is an error rather than a new entry: Firecracker refuses such a
    /// template (`CpuidFeatureNotSupported`), and inventing a leaf KVM did not
    /// report would show the guest a feature the host cannot back.
    public func apply(to entries: [CPUIDEntry]) throws(CPUTemplateApplyError) -> [CPUIDEntry] {
        var result = entries
        for modifier in cpuidModifiers {
            var matched = false
            for position in result.indices where modifier.matches(result[position]) {
                matched = true
                result[position].flags = modifier.flags
                for (register, bitmap) in modifier.registers {
                    result[position][register] = bitmap.apply(to: result[position][register])
                }
            }
            guard matched else {
                throw .cpuidLeafNotOffered(leaf: modifier.leaf, subleaf: modifier.subleaf)
            }
        }
        return result
    }

    /// MSR values (as read from KVM) with the template's patterns applied, in
    /// order, so a repeated MSR gets each of its patterns.
    /// Every address in `msrAddresses` must be present, as Firecracker requires.
    public func applyMSRs(to values: [UInt32: UInt64]) throws(CPUTemplateApplyError) -> [UInt32: UInt64] {
        var result = values
        for modifier in msrModifiers {
            guard let old = result[modifier.address] else {
                throw .msrNotOffered(address: modifier.address)
            }
            result[modifier.address] = modifier.bitmap.apply(to: old)
        }
        return result
    }
}

/// A template names CPUID or MSR state the host's KVM does not provide.
public enum CPUTemplateApplyError: Error, Equatable, Sendable, CustomStringConvertible {
    case cpuidLeafNotOffered(leaf: UInt32, subleaf: UInt32)
    case msrNotOffered(address: UInt32)

    public var description: String {
        switch self {
        case .cpuidLeafNotOffered(let leaf, let subleaf):
            "the CPU template modifies CPUID leaf 0x\(String(leaf, radix: 16)) subleaf 0x\(String(subleaf, radix: 16)), which KVM does not offer on this host"
        case .msrNotOffered(let address):
            "the CPU template modifies MSR 0x\(String(address, radix: 16)), which KVM does not offer on this host"
        }
    }
}
