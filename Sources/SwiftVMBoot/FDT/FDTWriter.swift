
/// Builds a flattened device tree blob (Devicetree Specification v0.4, ch. 5).
///
/// The blob is a 40-byte header, a memory reservation block (here just its
/// terminating empty entry), the structure block of tokens, and the strings
/// block holding each property name once. Every integer is big-endian.
///
///     var fdt = FDTWriter()
///     try fdt.beginNode("")
///     try fdt.property("compatible", strings: ["linux,dummy-virt"])
///     try fdt.endNode()
///     let blob = try fdt.finish()
///
/// Misuse (unbalanced nodes, properties outside a node or after a subnode,
/// names with characters the specification does not allow) throws
/// ``FDTError`` at the call that makes it.
public struct FDTWriter: Sendable {
    /// `magic` of the header (§5.2).
    public static let magic: UInt32 = 0xd00d_feed
    /// The version written, and the oldest version it stays compatible with.
    public static let version: UInt32 = 17
    public static let lastCompatibleVersion: UInt32 = 16
    static let headerSize = 40
    /// One 16-byte {address, size} entry of zeros ends the reservation block (§5.3).
    static let reservationTerminatorSize = 16

    // Structure block tokens (§5.4.1).
    static let beginNodeToken: UInt32 = 0x1
    static let endNodeToken: UInt32 = 0x2
    static let propToken: UInt32 = 0x3
    static let endToken: UInt32 = 0x9

    /// The physical ID of the boot CPU, written to `boot_cpuid_phys`.
    public var bootCPUID: UInt32 = 0

    private var structure: [UInt8] = []
    private var strings: [UInt8] = []
    private var stringOffsets: [String: UInt32] = [:]
    private var open: [OpenNode] = []
    private var rootDone = false
    private var nextPhandle: UInt32 = 1

    private struct OpenNode: Sendable {
        var name: String
        var properties: Set<String> = []
        var hasSubnode = false
    }

    public init() {}

    /// Hands out the next unused phandle, counting up from 1 (0 and
    /// 0xffffffff are not valid phandles). Write it into the node with
    /// `property("phandle", u32:)`.
    public mutating func allocatePhandle() -> UInt32 {
        defer { nextPhandle += 1 }
        return nextPhandle
    }

    /// Opens a node under the one currently open. The first node must be the
    /// root, named "".
    public mutating func beginNode(_ name: String) throws(FDTError) {
        if open.isEmpty {
            guard name.isEmpty, !rootDone else { throw .nodeOutsideRoot(name) }
        } else {
            guard Self.isValidNodeName(name) else { throw .invalidNodeName(name) }
            open[open.count - 1].hasSubnode = true
        }
        appendToken(Self.beginNodeToken)
        structure += Array(name.utf8) + [0]
        padStructure()
        open.append(OpenNode(name: name))
    }

    /// Closes the innermost open node.
    public mutating func endNode() throws(FDTError) {
        guard !open.isEmpty else { throw .unbalancedEndNode }
        open.removeLast()
        appendToken(Self.endNodeToken)
        if open.isEmpty { rootDone = true }
    }

    /// Adds a property with raw `bytes` as its value to the open node.
    public mutating func property(_ name: String, bytes: [UInt8]) throws(FDTError) {
        guard Self.isValidPropertyName(name) else { throw .invalidPropertyName(name) }
        guard let node = open.last else { throw .propertyOutsideNode(name) }
        guard !node.hasSubnode else { throw .propertyAfterSubnode(property: name, node: currentPath) }
        guard !node.properties.contains(name) else { throw .duplicateProperty(property: name, node: currentPath) }
        guard let length = UInt32(exactly: bytes.count) else { throw .tooLarge }
        open[open.count - 1].properties.insert(name)
        appendToken(Self.propToken)
        appendToken(length)
        appendToken(stringOffset(name))
        structure += bytes
        padStructure()
    }

    /// A property with no value, such as `interrupt-controller` (a boolean).
    public mutating func property(_ name: String) throws(FDTError) {
        try property(name, bytes: [])
    }

    /// A single 32-bit cell.
    public mutating func property(_ name: String, u32 value: UInt32) throws(FDTError) {
        try property(name, u32Array: [value])
    }

    /// A 64-bit value, written as two cells, high cell first.
    public mutating func property(_ name: String, u64 value: UInt64) throws(FDTError) {
        try property(name, u64Array: [value])
    }

    /// A list of 32-bit cells, e.g. `interrupts`.
    public mutating func property(_ name: String, u32Array values: [UInt32]) throws(FDTError) {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(values.count * 4)
        for value in values { bytes.appendBigEndian(value) }
        try property(name, bytes: bytes)
    }

    /// A list of 64-bit values, e.g. `reg` with two address and two size cells.
    public mutating func property(_ name: String, u64Array values: [UInt64]) throws(FDTError) {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(values.count * 8)
        for value in values { bytes.appendBigEndian(value) }
        try property(name, bytes: bytes)
    }

    /// A NUL-terminated string.
    public mutating func property(_ name: String, string: String) throws(FDTError) {
        try property(name, strings: [string])
    }

    /// A string list: each string NUL-terminated, one after another (§2.2.4.2).
    public mutating func property(_ name: String, strings values: [String]) throws(FDTError) {
        var bytes: [UInt8] = []
        for value in values {
            let utf8 = Array(value.utf8)
            guard !utf8.contains(0) else { throw .stringContainsNUL(property: name) }
            bytes += utf8 + [0]
        }
        try property(name, bytes: bytes)
    }

    /// The finished blob. Every node, the root included, must be closed.
    public func finish() throws(FDTError) -> [UInt8] {
        guard open.isEmpty else { throw .unclosedNodes(count: open.count, path: currentPath) }
        guard rootDone else { throw .missingRoot }
        var body = structure
        body.appendBigEndian(Self.endToken)

        let reservationOffset = Self.headerSize  // already 8-byte aligned, as §5.3 requires
        let structureOffset = reservationOffset + Self.reservationTerminatorSize
        let stringsOffset = structureOffset + body.count
        let total = stringsOffset + strings.count
        guard let totalSize = UInt32(exactly: total) else { throw .tooLarge }

        var blob: [UInt8] = []
        blob.reserveCapacity(total)
        for field in [
            Self.magic, totalSize, UInt32(structureOffset), UInt32(stringsOffset), UInt32(reservationOffset),
            Self.version, Self.lastCompatibleVersion, bootCPUID, UInt32(strings.count), UInt32(body.count),
        ] {
            blob.appendBigEndian(field)
        }
        blob += [UInt8](repeating: 0, count: Self.reservationTerminatorSize)
        blob += body
        blob += strings
        return blob
    }

    /// "/", "/cpus", "/cpus/cpu@0": the open nodes, for messages.
    private var currentPath: String {
        let names = open.dropFirst().map(\.name)
        return names.isEmpty ? "/" : "/" + names.joined(separator: "/")
    }

    /// Where `name` sits in the strings block, adding it the first time.
    private mutating func stringOffset(_ name: String) -> UInt32 {
        if let offset = stringOffsets[name] { return offset }
        let offset = UInt32(strings.count)
        strings += Array(name.utf8) + [0]
        stringOffsets[name] = offset
        return offset
    }

    private mutating func appendToken(_ value: UInt32) { structure.appendBigEndian(value) }

    /// Every token starts on a 4-byte boundary (§5.4.2).
    private mutating func padStructure() {
        while structure.count % 4 != 0 { structure.append(0) }
    }

    /// §2.2.1: node-name is 1 to 31 characters, starting with a letter, from
    /// 0-9 a-z A-Z , . _ + -; an optional @unit-address uses the same set.
    static func isValidNodeName(_ name: String) -> Bool {
        let parts = name.split(separator: "@", maxSplits: 1, omittingEmptySubsequences: false)
        let base = Array(parts[0].utf8)
        guard (1...31).contains(base.count), let first = base.first, isLetter(first) else { return false }
        guard base.allSatisfy(isNodeNameCharacter) else { return false }
        if parts.count == 2 {
            let unit = Array(parts[1].utf8)
            guard !unit.isEmpty, unit.allSatisfy(isNodeNameCharacter) else { return false }
        }
        return true
    }

    /// §2.2.4.1: 1 to 31 characters from 0-9 a-z A-Z , . _ + ? # -.
    static func isValidPropertyName(_ name: String) -> Bool {
        let bytes = Array(name.utf8)
        return (1...31).contains(bytes.count)
            && bytes.allSatisfy { isNodeNameCharacter($0) || $0 == UInt8(ascii: "?") || $0 == UInt8(ascii: "#") }
    }

    private static func isLetter(_ c: UInt8) -> Bool {
        (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(c) || (UInt8(ascii: "A")...UInt8(ascii: "Z")).contains(c)
    }

    private static func isNodeNameCharacter(_ c: UInt8) -> Bool {
        isLetter(c) || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(c)
            || c == UInt8(ascii: ",") || c == UInt8(ascii: ".") || c == UInt8(ascii: "_")
            || c == UInt8(ascii: "+") || c == UInt8(ascii: "-")
    }
}

extension Array where Element == UInt8 {
    /// Appends `value` big-endian, the byte order of every FDT field.
    mutating func appendBigEndian<T: FixedWidthInteger>(_ value: T) {
        Swift.withUnsafeBytes(of: value.bigEndian) { append(contentsOf: $0) }
    }
}
