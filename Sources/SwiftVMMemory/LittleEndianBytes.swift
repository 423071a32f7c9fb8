// Guest-visible structures on x86 are little-endian at fixed offsets; these
// helpers keep every builder explicit about both.

extension Array where Element == UInt8 {
    /// Writes `value` little-endian at `offset`; the bytes must already exist.
    public mutating func storeLittleEndian<T: FixedWidthInteger>(_ value: T, at offset: Int) {
        precondition(offset >= 0 && offset + MemoryLayout<T>.size <= count, "store past the end of a builder buffer")
        withUnsafeMutableBytes { $0.storeBytes(of: value.littleEndian, toByteOffset: offset, as: T.self) }
    }

    /// Appends `value` little-endian.
    public mutating func appendLittleEndian<T: FixedWidthInteger>(_ value: T) {
        Swift.withUnsafeBytes(of: value.littleEndian) { append(contentsOf: $0) }
    }

    /// Appends the ASCII bytes of `text`, space-padded or cut to `width`.
    public mutating func appendPaddedASCII(_ text: String, width: Int) {
        var field = Array(text.utf8.prefix(width))
        field += [UInt8](repeating: 0x20, count: width - field.count)
        append(contentsOf: field)
    }

    /// Reads a little-endian integer at `offset`, or nil when it would run past the end.
    public func loadLittleEndian<T: FixedWidthInteger>(_ type: T.Type = T.self, at offset: Int) -> T? {
        guard offset >= 0, offset <= count - MemoryLayout<T>.size else { return nil }
        return withUnsafeBytes { T(littleEndian: $0.loadUnaligned(fromByteOffset: offset, as: T.self)) }
    }
}

/// A size for messages: "3 GiB", "200 MiB", "1.5 MiB", "12 KiB", "100 bytes".
public func describeByteCount(_ bytes: UInt64) -> String {
    let mib: UInt64 = 1 << 20
    let gib: UInt64 = 1 << 30
    if bytes >= gib, bytes % gib == 0 { return "\(bytes / gib) GiB" }
    if bytes >= mib {
        if bytes % mib == 0 { return "\(bytes / mib) MiB" }
        let tenths = bytes / (mib / 10)
        return "\(tenths / 10).\(tenths % 10) MiB"
    }
    if bytes >= 1024, bytes % 1024 == 0 { return "\(bytes / 1024) KiB" }
    return "\(bytes) bytes"
}

/// `value` as "0x…" hex, the way addresses appear in messages.
public func hex<T: BinaryInteger>(_ value: T) -> String { "0x" + String(value, radix: 16) }
