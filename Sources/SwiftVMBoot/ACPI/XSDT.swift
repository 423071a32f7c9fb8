import SwiftVMMemory

/// The Extended System Description Table (ACPI 6.5 §5.2.8): the header and
/// the 64-bit addresses of the other tables. The DSDT is not listed; the
/// FADT's X_DSDT points at it (§5.2.9).
enum XSDT {
    static let revision: UInt8 = 1

    static func bytes(entries: [GuestAddress]) -> [UInt8] {
        var table = SystemDescriptionHeader.bytes(signature: "XSDT", revision: revision)
        for entry in entries { table.appendLittleEndian(entry.rawValue) }
        SystemDescriptionHeader.seal(&table)
        return table
    }
}
