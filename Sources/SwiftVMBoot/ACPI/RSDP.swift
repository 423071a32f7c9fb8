import SwiftVMMemory

/// The Root System Description Pointer (ACPI 6.5 §5.2.5.3), revision 2: the
/// 36-byte structure an OS finds by scanning 0xE0000-0xFFFFF on 16-byte
/// boundaries (§5.2.5.1), here at ``X86Layout/rsdp``.
///
/// It points only at the XSDT; the 32-bit RSDT address is left zero, which
/// an ACPI 2.0+ OS reads as "use the XSDT".
enum RSDP {
    static let size = 36
    static let revision: UInt8 = 2
    /// The first checksum covers the ACPI 1.0 part, bytes 0-19.
    static let checksumOffset = 8
    static let checksummedLength = 20
    /// The extended checksum covers all 36 bytes.
    static let extendedChecksumOffset = 32

    static func bytes(xsdt: GuestAddress) -> [UInt8] {
        var bytes = Array("RSD PTR ".utf8)
        bytes.append(0)  // checksum
        bytes.appendPaddedASCII(SystemDescriptionHeader.oemID, width: 6)
        bytes.append(revision)
        bytes.appendLittleEndian(UInt32(0))  // RsdtAddress: no RSDT
        bytes.appendLittleEndian(UInt32(size))
        bytes.appendLittleEndian(xsdt.rawValue)
        bytes += [0, 0, 0, 0]  // extended checksum, reserved
        bytes[checksumOffset] = ACPIChecksum.of(bytes[0..<checksummedLength])
        bytes[extendedChecksumOffset] = ACPIChecksum.of(bytes)
        return bytes
    }
}
