import SwiftVMHost
import SwiftVMMemory
import SwiftVMInspect

/// Describes where each vCPU is: RIP (with the kernel symbol when the
/// vmlinux has a symbol table), RSP, CR3 and the instruction at RIP. This is
/// what a person needs to tell a spinning guest from a halted one, and to
/// find the loop it spins in.
enum VCPUReport {
    static func describe(_ states: [VCPUState], silent: [Int], symbols: KernelSymbols?) -> String {
        var lines: [String] = []
        for state in states {
            let registers = state.registers
            var line = "vCPU \(state.vcpu): rip 0x\(hex(registers.rip))"
            if let name = symbols?.describe(registers.rip) { line += " <\(name)>" }
            line += " (\(registers.modeDescription))"
            line += " rsp 0x\(hex(registers.rsp)) cr3 0x\(hex(registers.cr3)) rflags 0x\(hex(registers.rflags))"
            if let state = registers.mpStateDescription { line += ", " + state }
            lines.append(line)
            if let bytes = state.instruction, !bytes.isEmpty {
                var text = "  instruction bytes at rip: " + bytes.map(byteHex).joined(separator: " ")
                if let hint = EmulationHint.decode(bytes) { text += " (\(hint.mnemonic): \(hint.fix))" }
                lines.append(text)
            } else {
                lines.append("  rip is not mapped by the guest's page tables")
            }
        }
        for vcpu in silent {
            lines.append("vCPU \(vcpu): did not stop to report its registers")
        }
        return lines.joined(separator: "\n")
    }

    private static func hex(_ value: UInt64) -> String { String(value, radix: 16) }
    private static func byteHex(_ byte: UInt8) -> String {
        let digits = String(byte, radix: 16)
        return digits.count == 1 ? "0" + digits : digits
    }
}
