import SwiftVMMemory

// Names, data and the named objects of a definition block (ACPI 6.5 §20.2).

extension AML {
    /// A NameString (§20.2.2): an optional root (`\`) or parent (`^`) prefix
    /// and dot-separated NameSegs of up to four characters, padded with `_`.
    ///
    /// Names are written in the source, so a malformed one is a programming
    /// error and stops at the precondition.
    struct NameString: AMLEncodable, ExpressibleByStringLiteral, Equatable {
        /// Root and parent prefix characters, as they appear in the path.
        var prefix: [UInt8]
        /// Each segment exactly four bytes.
        var segments: [[UInt8]]

        init(_ path: String) {
            var rest = Substring(path)
            var prefix: [UInt8] = []
            if rest.first == "\\" {
                prefix = [Opcode.rootChar]
                rest = rest.dropFirst()
            } else {
                while rest.first == "^" {
                    prefix.append(Opcode.parentPrefixChar)
                    rest = rest.dropFirst()
                }
            }
            self.prefix = prefix
            self.segments = rest.isEmpty ? [] : rest.split(separator: ".", omittingEmptySubsequences: false).map(Self.segment)
            precondition(segments.count <= 255, "AML name has too many segments: \(path)")
        }

        init(stringLiteral value: String) { self.init(value) }

        /// A NameSeg (§20.2.2): a lead character `A`-`Z` or `_`, then `A`-`Z`,
        /// `0`-`9` or `_`, padded with `_` to four bytes.
        static func segment(_ text: Substring) -> [UInt8] {
            let bytes = Array(text.utf8)
            let isLead = { (byte: UInt8) in (0x41...0x5a).contains(byte) || byte == 0x5f }
            let isName = { (byte: UInt8) in isLead(byte) || (0x30...0x39).contains(byte) }
            precondition(
                (1...4).contains(bytes.count) && isLead(bytes[0]) && bytes.allSatisfy(isName),
                "not an AML name segment: \(text)")
            return bytes + [UInt8](repeating: 0x5f, count: 4 - bytes.count)
        }

        func encode(into bytes: inout [UInt8]) {
            bytes += prefix
            switch segments.count {
            case 0: bytes.append(0x00)  // NullName
            case 1: break
            case 2: bytes.append(Opcode.dualNamePrefix)
            default: bytes += [Opcode.multiNamePrefix, UInt8(segments.count)]
            }
            for segment in segments { bytes += segment }
        }
    }

    /// An integer in its shortest encoding (§20.2.3): ZeroOp, OneOp, OnesOp
    /// (all 64 bits set, since the DSDT's revision 2 makes integers 64-bit),
    /// or a Byte, Word, DWord or QWord constant.
    struct Integer: AMLEncodable, Equatable {
        var value: UInt64

        init(_ value: UInt64) { self.value = value }

        func encode(into bytes: inout [UInt8]) {
            switch value {
            case 0: bytes.append(Opcode.zero)
            case 1: bytes.append(Opcode.one)
            case .max: bytes.append(Opcode.ones)
            case ...0xff: bytes += [Opcode.bytePrefix, UInt8(value)]
            case ...0xffff:
                bytes.append(Opcode.wordPrefix)
                bytes.appendLittleEndian(UInt16(value))
            case ...0xffff_ffff:
                bytes.append(Opcode.dwordPrefix)
                bytes.appendLittleEndian(UInt32(value))
            default:
                bytes.append(Opcode.qwordPrefix)
                bytes.appendLittleEndian(value)
            }
        }
    }

    /// ASL's `Zero`, `One` and `Ones`.
    static let zero = Integer(0)
    static let one = Integer(1)
    static let ones = Integer(.max)

    /// A compressed EISA id (ASL's `EISAID("PNP0501")`, §19.6): three
    /// upper-case letters of five bits each (`A` = 1) and four hex digits,
    /// stored as a big-endian 32-bit value, which AML then writes as a
    /// little-endian DWordConst: "PNP0501" is 0x0105D041.
    struct EisaId: AMLEncodable, Equatable {
        var value: UInt32

        init(_ id: String) {
            let bytes = Array(id.utf8)
            let isLetter = { (byte: UInt8) in (0x41...0x5a).contains(byte) }
            let hexValue = { (byte: UInt8) -> UInt32? in
                switch byte {
                case 0x30...0x39: UInt32(byte - 0x30)
                case 0x41...0x46: UInt32(byte - 0x41 + 10)
                default: nil
                }
            }
            precondition(bytes.count == 7 && bytes[0..<3].allSatisfy(isLetter), "not an EISA id: \(id)")
            var bigEndian: UInt32 = 0
            for letter in bytes[0..<3] { bigEndian = bigEndian << 5 | UInt32(letter - 0x40) }
            for digit in bytes[3..<7] {
                guard let nibble = hexValue(digit) else { preconditionFailure("not an EISA id: \(id)") }
                bigEndian = bigEndian << 4 | nibble
            }
            // The leading bit stays zero: 3 × 5 + 4 × 4 = 31 bits.
            self.value = bigEndian.byteSwapped
        }

        func encode(into bytes: inout [UInt8]) {
            // Always a DWordConst, as iasl emits it, whatever the value.
            bytes.append(Opcode.dwordPrefix)
            bytes.appendLittleEndian(value)
        }
    }

    /// `Name(name, value)`: DefName (§20.2.5.1).
    struct Name: AMLEncodable {
        var name: NameString
        var value: any AMLEncodable

        init(_ name: NameString, _ value: any AMLEncodable) {
            self.name = name
            self.value = value
        }

        func encode(into bytes: inout [UInt8]) {
            bytes.append(Opcode.name)
            name.encode(into: &bytes)
            value.encode(into: &bytes)
        }
    }

    /// `Scope(name) { ... }`: DefScope (§20.2.5.1).
    struct Scope: AMLEncodable {
        var name: NameString
        var terms: [any AMLEncodable]

        init(_ name: NameString, @AMLListBuilder<any AMLEncodable> _ terms: () -> [any AMLEncodable]) {
            self.name = name
            self.terms = terms()
        }

        func encode(into bytes: inout [UInt8]) {
            bytes.append(Opcode.scope)
            PackageLength.append(name.amlBytes + terms.flatMap(\.amlBytes), to: &bytes)
        }
    }

    /// `Device(name) { ... }`: DefDevice (§20.2.5.2).
    struct Device: AMLEncodable {
        var name: NameString
        var terms: [any AMLEncodable]

        init(_ name: NameString, @AMLListBuilder<any AMLEncodable> _ terms: () -> [any AMLEncodable]) {
            self.name = name
            self.terms = terms()
        }

        func encode(into bytes: inout [UInt8]) {
            bytes += [Opcode.extendedPrefix, Opcode.device]
            PackageLength.append(name.amlBytes + terms.flatMap(\.amlBytes), to: &bytes)
        }
    }

    /// `Package() { ... }`: DefPackage (§20.2.5.4), at most 255 elements.
    struct Package: AMLEncodable {
        var elements: [any AMLEncodable]

        init(_ elements: [any AMLEncodable]) {
            precondition(elements.count <= 255, "an AML Package holds at most 255 elements")
            self.elements = elements
        }

        func encode(into bytes: inout [UInt8]) {
            bytes.append(Opcode.package)
            PackageLength.append([UInt8(elements.count)] + elements.flatMap(\.amlBytes), to: &bytes)
        }
    }

    /// `Buffer() { ... }`: DefBuffer (§20.2.5.4), its size as an Integer.
    struct Buffer: AMLEncodable {
        var contents: [UInt8]

        init(_ contents: [UInt8]) { self.contents = contents }

        func encode(into bytes: inout [UInt8]) {
            bytes.append(Opcode.buffer)
            PackageLength.append(Integer(UInt64(contents.count)).amlBytes + contents, to: &bytes)
        }
    }
}

/// Plain integers in a DSDT tree (`Name("_UID", 0)`, `Package([5, 0])`).
extension Int: AMLEncodable {
    func encode(into bytes: inout [UInt8]) {
        precondition(self >= 0, "AML integers are unsigned")
        AML.Integer(UInt64(self)).encode(into: &bytes)
    }
}

extension UInt64: AMLEncodable {
    func encode(into bytes: inout [UInt8]) { AML.Integer(self).encode(into: &bytes) }
}

extension UInt32: AMLEncodable {
    func encode(into bytes: inout [UInt8]) { AML.Integer(UInt64(self)).encode(into: &bytes) }
}

/// A String object (§20.2.3): StringPrefix, ASCII bytes 0x01-0x7F, NUL.
extension String: AMLEncodable {
    func encode(into bytes: inout [UInt8]) {
        let ascii = Array(utf8)
        precondition(ascii.allSatisfy { (0x01...0x7f).contains($0) }, "AML strings are ASCII without NUL")
        bytes.append(AML.Opcode.stringPrefix)
        bytes += ascii
        bytes.append(0x00)
    }
}
