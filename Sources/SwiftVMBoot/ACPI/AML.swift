/// ACPI Machine Language: the bytecode of a DSDT's definition block
/// (ACPI 6.5 §20, "ACPI Machine Language (AML) Specification").
///
/// Only what swiftvm's DSDT needs is here: names, integers, strings, EISA ids,
/// `Name`, `Scope`, `Device`, `Package`, `Buffer` and, in
/// `AML+Resources.swift`, `ResourceTemplate` with its descriptors. Each is a
/// value that appends its encoding, so a DSDT is written as a tree that reads
/// like the ASL it stands for:
///
///     Scope("\\_SB_") {
///         Device("COM1") {
///             Name("_HID", EisaId("PNP0501"))
///             Name("_CRS", ResourceTemplate { IO(base: 0x3f8, length: 8); IRQNoFlags(4) })
///         }
///     }
enum AML {}

/// Something that has an AML encoding.
protocol AMLEncodable {
    /// Appends the AML bytes of `self`.
    func encode(into bytes: inout [UInt8])
}

extension AMLEncodable {
    /// The AML bytes of `self` on their own.
    var amlBytes: [UInt8] {
        var bytes: [UInt8] = []
        encode(into: &bytes)
        return bytes
    }
}

/// Collects the terms of a `Scope`, `Device` or `ResourceTemplate` body,
/// including those produced by `for` loops and `if`.
@resultBuilder
enum AMLListBuilder<Element> {
    static func buildExpression(_ element: Element) -> [Element] { [element] }
    static func buildExpression(_ elements: [Element]) -> [Element] { elements }
    static func buildBlock(_ parts: [Element]...) -> [Element] { parts.flatMap { $0 } }
    static func buildArray(_ parts: [[Element]]) -> [Element] { parts.flatMap { $0 } }
    static func buildOptional(_ part: [Element]?) -> [Element] { part ?? [] }
    static func buildEither(first part: [Element]) -> [Element] { part }
    static func buildEither(second part: [Element]) -> [Element] { part }
}

extension AML {
    /// Opcodes and prefixes (ACPI 6.5 §20.3, table "AML Byte Stream Byte Values").
    enum Opcode {
        static let zero: UInt8 = 0x00
        static let one: UInt8 = 0x01
        static let name: UInt8 = 0x08
        static let bytePrefix: UInt8 = 0x0a
        static let wordPrefix: UInt8 = 0x0b
        static let dwordPrefix: UInt8 = 0x0c
        static let stringPrefix: UInt8 = 0x0d
        static let qwordPrefix: UInt8 = 0x0e
        static let scope: UInt8 = 0x10
        static let buffer: UInt8 = 0x11
        static let package: UInt8 = 0x12
        static let dualNamePrefix: UInt8 = 0x2e
        static let multiNamePrefix: UInt8 = 0x2f
        static let extendedPrefix: UInt8 = 0x5b
        static let rootChar: UInt8 = 0x5c
        static let parentPrefixChar: UInt8 = 0x5e
        static let ones: UInt8 = 0xff
        /// Follows ``extendedPrefix``.
        static let device: UInt8 = 0x82
    }

    /// PkgLength (§20.2.4): the length of a package, counting its own bytes.
    ///
    /// One byte holds lengths up to 63 in bits 0-5. Longer lengths put the
    /// number of bytes that follow (1-3) in bits 6-7 of the lead byte, the
    /// low nibble of the length in bits 0-3, and the rest in the following
    /// bytes, least significant first: at most 2^28 - 1.
    enum PackageLength {
        static let maximum = (1 << 28) - 1

        /// The encoding of `length`, which must already count these bytes.
        static func encode(_ length: Int) -> [UInt8] {
            precondition((0...maximum).contains(length), "AML package length out of range")
            if length < 1 << 6 { return [UInt8(length)] }
            let following = length < 1 << 12 ? 1 : length < 1 << 20 ? 2 : 3
            var bytes = [UInt8(following << 6) | UInt8(length & 0x0f)]
            for index in 0..<following {
                bytes.append(UInt8(truncatingIfNeeded: length >> (4 + 8 * index)))
            }
            return bytes
        }

        /// Appends the PkgLength for `payload` (the smallest encoding that can
        /// hold the payload plus itself), then the payload.
        static func append(_ payload: [UInt8], to bytes: inout [UInt8]) {
            for size in 1...4 {
                let total = payload.count + size
                if encode(total).count == size {
                    bytes += encode(total)
                    bytes += payload
                    return
                }
            }
            preconditionFailure("AML package of \(payload.count) bytes is too long")
        }
    }
}
