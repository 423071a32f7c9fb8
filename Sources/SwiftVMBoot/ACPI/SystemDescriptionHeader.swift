import SwiftVMMemory

/// The 36-byte header every ACPI table but the RSDP starts with (ACPI 6.5
/// §5.2.6), and the checksum rule tables and the RSDP share.
enum SystemDescriptionHeader {
    static let size = 36
    static let lengthOffset = 4
    static let checksumOffset = 9

    /// Who made the tables, as every header names it.
    static let oemID = "SWIFTV"
    static let oemTableID = "SWIFTVM "
    static let oemRevision: UInt32 = 1
    /// The "ASL compiler" fields: here the builder in this module.
    static let creatorID = "SWVM"
    static let creatorRevision: UInt32 = 1

    /// A header with a zero length and checksum, which ``seal(_:)`` fills in
    /// once the table body follows it.
    static func bytes(signature: String, revision: UInt8) -> [UInt8] {
        precondition(signature.utf8.count == 4, "ACPI signatures are four characters")
        var bytes = Array(signature.utf8)
        bytes.appendLittleEndian(UInt32(0))  // length
        bytes += [revision, 0]  // revision, checksum
        bytes.appendPaddedASCII(oemID, width: 6)
        bytes.appendPaddedASCII(oemTableID, width: 8)
        bytes.appendLittleEndian(oemRevision)
        bytes.appendPaddedASCII(creatorID, width: 4)
        bytes.appendLittleEndian(creatorRevision)
        return bytes
    }

    /// Sets the length field to the table's size, then the checksum byte so
    /// that the whole table sums to zero.
    static func seal(_ table: inout [UInt8]) {
        table.storeLittleEndian(UInt32(table.count), at: lengthOffset)
        table[checksumOffset] = 0
        table[checksumOffset] = ACPIChecksum.of(table)
    }
}

enum ACPIChecksum {
    /// The byte that makes `bytes` sum to zero modulo 256 once it is added.
    static func of(_ bytes: some Sequence<UInt8>) -> UInt8 {
        0 &- bytes.reduce(0, &+)
    }
}

/// A Generic Address Structure (ACPI 6.5 §5.2.3.2): 12 bytes that say where
/// a register is and how to access it.
struct GenericAddress: Equatable {
    /// Address space ids this module uses.
    enum Space: UInt8 {
        case systemMemory = 0
        case systemIO = 1
    }

    var space: Space
    var bitWidth: UInt8
    var bitOffset: UInt8 = 0
    /// 1 = byte, 2 = word, 3 = dword, 4 = qword access.
    var accessSize: UInt8
    var address: UInt64

    /// A one-byte register at I/O `port`, accessed as a byte.
    static func ioPortByte(_ port: UInt16) -> GenericAddress {
        GenericAddress(space: .systemIO, bitWidth: 8, accessSize: 1, address: UInt64(port))
    }

    static let size = 12

    func encode(into bytes: inout [UInt8]) {
        bytes += [space.rawValue, bitWidth, bitOffset, accessSize]
        bytes.appendLittleEndian(address)
    }
}
