/// Writes `Encodable` values as compact JSON (RFC 8259), keys in the order
/// the type encodes them; the counterpart of `JSONInput` for API responses,
/// metrics and `GET /vm/config`. Optional values the type encodes with
/// `encodeIfPresent` are left out when nil, as Firecracker leaves them out.
public enum JSONOutput {
    public static func encode(_ value: some Encodable) -> [UInt8] {
        let encoder = TreeEncoder(codingPath: [])
        // Encoding into a tree cannot fail for the types this package writes;
        // a custom `encode(to:)` that throws gets its error as a string.
        do { try value.encode(to: encoder) } catch { return render(.string("\(error)")) }
        return render(encoder.storage.node)
    }

    public static func string(_ value: some Encodable) -> String {
        String(decoding: encode(value), as: UTF8.self)
    }

    /// A parsed tree written back as JSON (numbers keep their source text).
    public static func encode(_ value: JSONValue) -> [UInt8] {
        render(node(value))
    }

    private static func node(_ value: JSONValue) -> Node {
        switch value.content {
        case .null: .null
        case .bool(let flag): .bool(flag)
        case .number(let number): .number(number.text)
        case .string(let text): .string(text)
        case .array(let items): .array(items.map(node))
        case .object(let object): .object(object.members.map { ($0.key, node($0.value)) })
        }
    }

    indirect enum Node {
        case object([(String, Node)])
        case array([Node])
        case string(String)
        case number(String)
        case bool(Bool)
        case null
    }

    static func render(_ node: Node) -> [UInt8] {
        var out: [UInt8] = []
        write(node, into: &out)
        return out
    }

    private static func write(_ node: Node, into out: inout [UInt8]) {
        switch node {
        case .null: out += Array("null".utf8)
        case .bool(let value): out += Array((value ? "true" : "false").utf8)
        case .number(let text): out += Array(text.utf8)
        case .string(let text): writeString(text, into: &out)
        case .array(let items):
            out.append(UInt8(ascii: "["))
            for (index, item) in items.enumerated() {
                if index > 0 { out.append(UInt8(ascii: ",")) }
                write(item, into: &out)
            }
            out.append(UInt8(ascii: "]"))
        case .object(let members):
            out.append(UInt8(ascii: "{"))
            for (index, member) in members.enumerated() {
                if index > 0 { out.append(UInt8(ascii: ",")) }
                writeString(member.0, into: &out)
                out.append(UInt8(ascii: ":"))
                write(member.1, into: &out)
            }
            out.append(UInt8(ascii: "}"))
        }
    }

    private static func writeString(_ text: String, into out: inout [UInt8]) {
        out.append(UInt8(ascii: "\""))
        for byte in text.utf8 {
            switch byte {
            case UInt8(ascii: "\""): out += Array("\\\"".utf8)
            case UInt8(ascii: "\\"): out += Array("\\\\".utf8)
            case 0x0a: out += Array("\\n".utf8)
            case 0x0d: out += Array("\\r".utf8)
            case 0x09: out += Array("\\t".utf8)
            case 0..<0x20:
                let hex = String(byte, radix: 16)
                out += Array(("\\u00" + (hex.count == 1 ? "0" : "") + hex).utf8)
            default: out.append(byte)
            }
        }
        out.append(UInt8(ascii: "\""))
    }

    /// A container's value: finished, or still being filled by a nested container.
    enum Entry {
        case node(Node)
        case slot(Slot)

        var node: Node {
            switch self {
            case .node(let node): node
            case .slot(let slot): slot.node
            }
        }
    }

    /// Where the values of one container go while the tree is built.
    final class Slot {
        var root: Node?
        var members: [(String, Entry)] = []
        var items: [Entry] = []
        var kind: Kind = .unset
        enum Kind { case unset, object, array, single }

        /// The finished node of this slot.
        var node: Node {
            switch kind {
            case .object: .object(members.map { ($0.0, $0.1.node) })
            case .array: .array(items.map(\.node))
            case .single, .unset: root ?? .null
            }
        }
    }

    final class TreeEncoder: Encoder {
        let codingPath: [any CodingKey]
        let userInfo: [CodingUserInfoKey: Any] = [:]
        let storage = Slot()

        init(codingPath: [any CodingKey]) { self.codingPath = codingPath }

        func container<Key: CodingKey>(keyedBy type: Key.Type) -> KeyedEncodingContainer<Key> {
            storage.kind = .object
            return KeyedEncodingContainer(Keyed<Key>(encoder: self))
        }

        func unkeyedContainer() -> any UnkeyedEncodingContainer {
            storage.kind = .array
            return Unkeyed(encoder: self)
        }

        func singleValueContainer() -> any SingleValueEncodingContainer {
            storage.kind = .single
            return Single(encoder: self)
        }

        /// Encodes `value` on its own and returns its node.
        func node(of value: some Encodable, key: (any CodingKey)?) throws -> Node {
            if let node = JSONOutput.primitive(value) { return node }
            let nested = TreeEncoder(codingPath: codingPath + (key.map { [$0] } ?? []))
            try value.encode(to: nested)
            return nested.storage.node
        }

        /// A child encoder whose container becomes an entry of this one.
        func child(_ key: (any CodingKey)?) -> TreeEncoder {
            TreeEncoder(codingPath: codingPath + (key.map { [$0] } ?? []))
        }
    }

    /// The node of a value JSON has a literal for; nil for anything else.
    static func primitive(_ value: some Encodable) -> Node? {
        switch value {
        case let text as String: .string(text)
        case let flag as Bool: .bool(flag)
        case let number as Int: .number(String(number))
        case let number as Int8: .number(String(number))
        case let number as Int16: .number(String(number))
        case let number as Int32: .number(String(number))
        case let number as Int64: .number(String(number))
        case let number as UInt: .number(String(number))
        case let number as UInt8: .number(String(number))
        case let number as UInt16: .number(String(number))
        case let number as UInt32: .number(String(number))
        case let number as UInt64: .number(String(number))
        case let number as Double: number.isFinite ? .number(String(number)) : .null
        case let number as Float: number.isFinite ? .number(String(number)) : .null
        default: nil
        }
    }

    struct Keyed<Key: CodingKey>: KeyedEncodingContainerProtocol {
        let encoder: TreeEncoder
        var codingPath: [any CodingKey] { encoder.codingPath }

        mutating func encodeNil(forKey key: Key) throws { encoder.storage.members.append((key.stringValue, .node(.null))) }

        mutating func encode<T: Encodable>(_ value: T, forKey key: Key) throws {
            encoder.storage.members.append((key.stringValue, .node(try encoder.node(of: value, key: key))))
        }

        mutating func nestedContainer<NestedKey: CodingKey>(
            keyedBy keyType: NestedKey.Type, forKey key: Key
        ) -> KeyedEncodingContainer<NestedKey> {
            let nested = encoder.child(key)
            encoder.storage.members.append((key.stringValue, .slot(nested.storage)))
            return nested.container(keyedBy: keyType)
        }

        mutating func nestedUnkeyedContainer(forKey key: Key) -> any UnkeyedEncodingContainer {
            let nested = encoder.child(key)
            encoder.storage.members.append((key.stringValue, .slot(nested.storage)))
            return nested.unkeyedContainer()
        }

        mutating func superEncoder() -> any Encoder { encoder }
        mutating func superEncoder(forKey key: Key) -> any Encoder { encoder }
    }

    struct Unkeyed: UnkeyedEncodingContainer {
        let encoder: TreeEncoder
        var codingPath: [any CodingKey] { encoder.codingPath }
        var count: Int { encoder.storage.items.count }

        mutating func encodeNil() throws { encoder.storage.items.append(.node(.null)) }

        mutating func encode<T: Encodable>(_ value: T) throws {
            encoder.storage.items.append(.node(try encoder.node(of: value, key: nil)))
        }

        mutating func nestedContainer<NestedKey: CodingKey>(keyedBy keyType: NestedKey.Type) -> KeyedEncodingContainer<NestedKey> {
            let nested = encoder.child(nil)
            encoder.storage.items.append(.slot(nested.storage))
            return nested.container(keyedBy: keyType)
        }

        mutating func nestedUnkeyedContainer() -> any UnkeyedEncodingContainer {
            let nested = encoder.child(nil)
            encoder.storage.items.append(.slot(nested.storage))
            return nested.unkeyedContainer()
        }

        mutating func superEncoder() -> any Encoder { encoder }
    }

    struct Single: SingleValueEncodingContainer {
        let encoder: TreeEncoder
        var codingPath: [any CodingKey] { encoder.codingPath }

        mutating func encodeNil() throws { encoder.storage.root = .null }

        mutating func encode<T: Encodable>(_ value: T) throws {
            encoder.storage.root = try encoder.node(of: value, key: nil)
        }
    }
}

/// A parsed value written back as it was read (numbers keep their source
/// text), for configuration echoed through an `Encodable` type.
extension JSONValue: Encodable {
    private struct Key: CodingKey {
        var stringValue: String
        var intValue: Int? { nil }
        init(stringValue: String) { self.stringValue = stringValue }
        init?(intValue: Int) { nil }
    }

    public func encode(to encoder: any Encoder) throws {
        switch content {
        case .null:
            var container = encoder.singleValueContainer()
            try container.encodeNil()
        case .bool(let flag):
            var container = encoder.singleValueContainer()
            try container.encode(flag)
        case .number(let number):
            var container = encoder.singleValueContainer()
            if let exact = Int64(number.text) {
                try container.encode(exact)
            } else if let unsigned = UInt64(number.text) {
                try container.encode(unsigned)
            } else {
                try container.encode(Double(number.text) ?? 0)
            }
        case .string(let text):
            var container = encoder.singleValueContainer()
            try container.encode(text)
        case .array(let items):
            var container = encoder.unkeyedContainer()
            for item in items { try container.encode(item) }
        case .object(let object):
            var container = encoder.container(keyedBy: Key.self)
            for member in object.members { try container.encode(member.value, forKey: Key(stringValue: member.key)) }
        }
    }
}
