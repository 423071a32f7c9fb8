/// Decodes `Decodable` types from JSON with errors that name the source, the
/// JSON path, the line and the column.
///
/// Like Firecracker's API, an object field the type never asks for is an
/// error that names the field and the known ones; a type that conforms to
/// `JSONAllowsUnknownFields` accepts and ignores extra fields instead. The
/// check covers objects a type opens with `container(keyedBy:)`; a
/// synthesized `Decodable` struct with no stored properties opens none.
///
/// An error thrown by a type's own `init(from:)` is reported at the value that
/// type was decoding: a `DecodingError` at the coding path it names (its
/// debug description becomes the problem), any other error at the value
/// itself with its `description` as the problem.
public enum JSONInput {
    /// Parses `bytes` strictly (see `JSONParser`) and decodes a `T` from them.
    public static func decode<T: Decodable>(
        _ type: T.Type, from bytes: [UInt8], source: String, limits: JSONParser.Limits = JSONParser.Limits()
    ) throws(JSONInputError) -> T {
        let root = try JSONParser.parse(bytes, source: source, limits: limits)
        return try decode(type, from: root, source: source)
    }

    /// Decodes a `T` from an already parsed tree.
    public static func decode<T: Decodable>(_ type: T.Type, from root: JSONValue, source: String) throws(JSONInputError) -> T {
        try JSONDecodingSession(source: source, root: root).decode(type, node: root, path: [])
    }
}

/// Marks a type whose JSON object may carry fields it does not read; they are ignored.
public protocol JSONAllowsUnknownFields {}

/// What one `JSONInput.decode` call shares: the source for messages, the
/// root for resolving coding paths in errors, and the scalar conversions.
final class JSONDecodingSession {
    let source: String
    let root: JSONValue

    init(source: String, root: JSONValue) {
        self.source = source
        self.root = root
    }

    func failure(_ problem: String, path: [JSONPathComponent], at position: JSONPosition) -> JSONInputError {
        JSONInputError(source: source, path: path.formatted, line: position.line, column: position.column, problem: problem)
    }

    func mismatch(_ expected: String, _ node: JSONValue, _ path: [JSONPathComponent]) -> JSONInputError {
        failure("expected \(expected), found \(node.kindDescription)", path: path, at: node.position)
    }

    /// Decodes `T` from `node`, then refuses fields of its object that it never asked for.
    func decode<T: Decodable>(_ type: T.Type, node: JSONValue, path: [JSONPathComponent]) throws(JSONInputError) -> T {
        // The raw tree is a valid target, for types that want to inspect a value themselves.
        if T.self == JSONValue.self, let raw = node as? T { return raw }
        let decoder = JSONTreeDecoder(session: self, node: node, path: path)
        let value: T
        do {
            value = try T(from: decoder)
        } catch let error as JSONInputError {
            throw error
        } catch let error as DecodingError {
            throw translate(error, decoding: T.self, node: node, path: path)
        } catch {
            throw failure("\(error)", path: path, at: node.position)
        }
        if !(T.self is any JSONAllowsUnknownFields.Type) {
            try decoder.refuseUnknownFields()
        }
        return value
    }

    // MARK: Scalars

    func bool(_ node: JSONValue, _ path: [JSONPathComponent]) throws(JSONInputError) -> Bool {
        guard case .bool(let value) = node.content else { throw mismatch("true or false", node, path) }
        return value
    }

    func string(_ node: JSONValue, _ path: [JSONPathComponent]) throws(JSONInputError) -> String {
        guard case .string(let value) = node.content else { throw mismatch("a string", node, path) }
        return value
    }

    func integer<T: FixedWidthInteger>(_ type: T.Type, _ node: JSONValue, _ path: [JSONPathComponent]) throws(JSONInputError) -> T {
        guard case .number(let number) = node.content else { throw mismatch("an integer", node, path) }
        guard let value = number.integer(as: T.self) else {
            throw failure("expected an integer from \(T.min) to \(T.max), found \(number.text)", path: path, at: node.position)
        }
        return value
    }

    func double(_ node: JSONValue, _ path: [JSONPathComponent]) throws(JSONInputError) -> Double {
        guard case .number(let number) = node.content else { throw mismatch("a number", node, path) }
        guard let value = number.double else {
            throw failure("\(number.text) is beyond the range of a 64-bit floating-point number", path: path, at: node.position)
        }
        return value
    }

    func float(_ node: JSONValue, _ path: [JSONPathComponent]) throws(JSONInputError) -> Float {
        let value = Float(try double(node, path))
        guard value.isFinite else {
            let text = if case .number(let number) = node.content { number.text } else { node.kindDescription }
            throw failure("\(text) is beyond the range of a 32-bit floating-point number", path: path, at: node.position)
        }
        return value
    }

    // MARK: Errors from the types being decoded

    /// Places a `DecodingError` a type threw at the value its coding path names.
    func translate<T>(_ error: DecodingError, decoding type: T.Type, node: JSONValue, path: [JSONPathComponent]) -> JSONInputError {
        switch error {
        case .keyNotFound(let key, let context):
            let (target, targetPath) = locate(context.codingPath)
            let problem = context.debugDescription.isEmpty ? "required field is missing" : context.debugDescription
            return failure(problem, path: targetPath + [.key(key.stringValue)], at: target.position)
        case .dataCorrupted(let context):
            let (target, targetPath) = locate(context.codingPath)
            if targetPath == path, let problem = rawValueProblem(T.self, node) {
                return failure(problem, path: path, at: node.position)
            }
            return failure(context.debugDescription, path: targetPath, at: target.position)
        case .typeMismatch(_, let context), .valueNotFound(_, let context):
            let (target, targetPath) = locate(context.codingPath)
            return failure(context.debugDescription, path: targetPath, at: target.position)
        @unknown default:
            return failure("\(error)", path: path, at: node.position)
        }
    }

    /// The deepest value along `codingPath` and the path to it; components
    /// past a value that does not exist are kept in the path.
    func locate(_ codingPath: [any CodingKey]) -> (JSONValue, [JSONPathComponent]) {
        var node = root
        var path: [JSONPathComponent] = []
        var resolving = true
        for key in codingPath {
            if resolving {
                switch node.content {
                case .object(let object):
                    if let member = object[key.stringValue] {
                        node = member.value
                        path.append(.key(key.stringValue))
                        continue
                    }
                case .array(let elements):
                    if let index = key.intValue, elements.indices.contains(index) {
                        node = elements[index]
                        path.append(.index(index))
                        continue
                    }
                default:
                    break
                }
                resolving = false
            }
            if let index = key.intValue, key.stringValue == "Index \(index)" {
                path.append(.index(index))
            } else {
                path.append(.key(key.stringValue))
            }
        }
        return (node, path)
    }

    /// For an enum with raw values that can list its cases and refused
    /// `node`, a message naming the accepted values instead of Swift's own.
    func rawValueProblem<T>(_ type: T.Type, _ node: JSONValue) -> String? {
        guard T.self is any RawRepresentable.Type, let enumerable = T.self as? any CaseIterable.Type else { return nil }
        let found: String = switch node.content {
        case .string(let text): jsonQuoted(text)
        case .number(let number): number.text
        case .bool(let value): "\(value)"
        default: node.kindDescription
        }
        return "expected one of \(Self.caseNames(enumerable).joined(separator: ", ")), found \(found)"
    }

    private static func caseNames<C: CaseIterable>(_ type: C.Type) -> [String] {
        C.allCases.map { value in
            guard let raw = (value as? any RawRepresentable)?.rawValue else { return "\(value)" }
            if let text = raw as? String { return jsonQuoted(text) }
            return "\(raw)"
        }
    }
}

/// A coding key the decoder makes for the paths it reports.
struct JSONCodingKey: CodingKey {
    var stringValue: String
    var intValue: Int?

    init(stringValue: String) {
        self.stringValue = stringValue
        intValue = nil
    }

    init(intValue: Int) {
        // The standard library's decoders name array positions this way.
        stringValue = "Index \(intValue)"
        self.intValue = intValue
    }

    init(_ component: JSONPathComponent) {
        switch component {
        case .key(let key): self.init(stringValue: key)
        case .index(let index): self.init(intValue: index)
        }
    }
}

/// A `Decoder` for one value of the tree; it remembers which keys of its
/// object were asked for, so that the others can be refused.
final class JSONTreeDecoder: Decoder {
    let session: JSONDecodingSession
    let node: JSONValue
    let path: [JSONPathComponent]
    private var askedKeys: [String] = []
    private var askedKeySet: Set<String> = []
    private var openedAsObject = false
    /// Decoders for values reached through nested containers and super
    /// decoders: they belong to the same type, so its unknown-field rule covers them.
    private var nestedDecoders: [JSONTreeDecoder] = []

    init(session: JSONDecodingSession, node: JSONValue, path: [JSONPathComponent]) {
        self.session = session
        self.node = node
        self.path = path
    }

    var codingPath: [any CodingKey] { path.map(JSONCodingKey.init) }
    var userInfo: [CodingUserInfoKey: Any] { [:] }

    func container<Key: CodingKey>(keyedBy type: Key.Type) throws -> KeyedDecodingContainer<Key> {
        guard case .object(let object) = node.content else { throw session.mismatch("an object", node, path) }
        openedAsObject = true
        return KeyedDecodingContainer(JSONKeyedContainer<Key>(decoder: self, object: object))
    }

    func unkeyedContainer() throws -> any UnkeyedDecodingContainer {
        guard case .array(let elements) = node.content else { throw session.mismatch("an array", node, path) }
        return JSONUnkeyedContainer(decoder: self, elements: elements)
    }

    func singleValueContainer() throws -> any SingleValueDecodingContainer {
        JSONSingleValueContainer(decoder: self)
    }

    func noteAsked(_ key: String) {
        if askedKeySet.insert(key).inserted { askedKeys.append(key) }
    }

    func nested(_ node: JSONValue, path: [JSONPathComponent]) -> JSONTreeDecoder {
        let decoder = JSONTreeDecoder(session: session, node: node, path: path)
        nestedDecoders.append(decoder)
        return decoder
    }

    /// Throws for the first field, in input order, that was never asked for.
    func refuseUnknownFields() throws(JSONInputError) {
        if openedAsObject, case .object(let object) = node.content {
            for member in object.members where !askedKeySet.contains(member.key) {
                let known = askedKeys.isEmpty ? "this object takes no fields" : "known fields: \(askedKeys.joined(separator: ", "))"
                throw session.failure(
                    "unknown field \(jsonQuoted(member.key)); \(known)", path: path + [.key(member.key)], at: member.keyPosition)
            }
        }
        for decoder in nestedDecoders { try decoder.refuseUnknownFields() }
    }
}

private struct JSONKeyedContainer<Key: CodingKey>: KeyedDecodingContainerProtocol {
    let decoder: JSONTreeDecoder
    let object: JSONObject

    var codingPath: [any CodingKey] { decoder.codingPath }
    var session: JSONDecodingSession { decoder.session }

    /// Every key of the object that `Key` can represent; listing them counts as asking for them.
    var allKeys: [Key] {
        object.members.compactMap { member in
            guard let key = Key(stringValue: member.key) else { return nil }
            decoder.noteAsked(member.key)
            return key
        }
    }

    func contains(_ key: Key) -> Bool {
        decoder.noteAsked(key.stringValue)
        return object[key.stringValue] != nil
    }

    func childPath(_ key: Key) -> [JSONPathComponent] { decoder.path + [.key(key.stringValue)] }

    func value(_ key: Key) throws(JSONInputError) -> JSONValue {
        decoder.noteAsked(key.stringValue)
        guard let member = object[key.stringValue] else {
            throw session.failure("required field is missing", path: childPath(key), at: decoder.node.position)
        }
        return member.value
    }

    func decodeNil(forKey key: Key) throws -> Bool { try value(key).isNull }
    func decode(_ type: Bool.Type, forKey key: Key) throws -> Bool { try session.bool(value(key), childPath(key)) }
    func decode(_ type: String.Type, forKey key: Key) throws -> String { try session.string(value(key), childPath(key)) }
    func decode(_ type: Double.Type, forKey key: Key) throws -> Double { try session.double(value(key), childPath(key)) }
    func decode(_ type: Float.Type, forKey key: Key) throws -> Float { try session.float(value(key), childPath(key)) }
    func decode(_ type: Int.Type, forKey key: Key) throws -> Int { try session.integer(type, value(key), childPath(key)) }
    func decode(_ type: Int8.Type, forKey key: Key) throws -> Int8 { try session.integer(type, value(key), childPath(key)) }
    func decode(_ type: Int16.Type, forKey key: Key) throws -> Int16 { try session.integer(type, value(key), childPath(key)) }
    func decode(_ type: Int32.Type, forKey key: Key) throws -> Int32 { try session.integer(type, value(key), childPath(key)) }
    func decode(_ type: Int64.Type, forKey key: Key) throws -> Int64 { try session.integer(type, value(key), childPath(key)) }
    func decode(_ type: UInt.Type, forKey key: Key) throws -> UInt { try session.integer(type, value(key), childPath(key)) }
    func decode(_ type: UInt8.Type, forKey key: Key) throws -> UInt8 { try session.integer(type, value(key), childPath(key)) }
    func decode(_ type: UInt16.Type, forKey key: Key) throws -> UInt16 { try session.integer(type, value(key), childPath(key)) }
    func decode(_ type: UInt32.Type, forKey key: Key) throws -> UInt32 { try session.integer(type, value(key), childPath(key)) }
    func decode(_ type: UInt64.Type, forKey key: Key) throws -> UInt64 { try session.integer(type, value(key), childPath(key)) }

    func decode<T: Decodable>(_ type: T.Type, forKey key: Key) throws -> T {
        try session.decode(type, node: value(key), path: childPath(key))
    }

    /// Absent and null both read as nil.
    func decodeIfPresent<T: Decodable>(_ type: T.Type, forKey key: Key) throws -> T? {
        decoder.noteAsked(key.stringValue)
        guard let member = object[key.stringValue], !member.value.isNull else { return nil }
        return try session.decode(type, node: member.value, path: childPath(key))
    }

    func nestedContainer<NestedKey: CodingKey>(keyedBy type: NestedKey.Type, forKey key: Key) throws -> KeyedDecodingContainer<NestedKey> {
        try decoder.nested(value(key), path: childPath(key)).container(keyedBy: type)
    }

    func nestedUnkeyedContainer(forKey key: Key) throws -> any UnkeyedDecodingContainer {
        try decoder.nested(value(key), path: childPath(key)).unkeyedContainer()
    }

    func superDecoder() throws -> any Decoder {
        superDecoder(named: "super")
    }

    func superDecoder(forKey key: Key) throws -> any Decoder {
        superDecoder(named: key.stringValue)
    }

    /// A missing field gives a decoder for null, as the standard library's JSONDecoder does.
    private func superDecoder(named name: String) -> any Decoder {
        decoder.noteAsked(name)
        let node = object[name]?.value ?? JSONValue(.null, at: decoder.node.position)
        return decoder.nested(node, path: decoder.path + [.key(name)])
    }
}

private struct JSONUnkeyedContainer: UnkeyedDecodingContainer {
    let decoder: JSONTreeDecoder
    let elements: [JSONValue]
    private(set) var currentIndex = 0

    init(decoder: JSONTreeDecoder, elements: [JSONValue]) {
        self.decoder = decoder
        self.elements = elements
    }

    var codingPath: [any CodingKey] { decoder.codingPath }
    var count: Int? { elements.count }
    var isAtEnd: Bool { currentIndex >= elements.count }
    var session: JSONDecodingSession { decoder.session }

    /// The next element and its path; the index moves on only when decoding
    /// succeeds, as with the standard library's decoders.
    func peek() throws(JSONInputError) -> (JSONValue, [JSONPathComponent]) {
        guard currentIndex < elements.count else {
            let count = elements.count == 1 ? "1 element" : "\(elements.count) elements"
            throw session.failure("expected another element, but the array has only \(count)", path: decoder.path, at: decoder.node.position)
        }
        return (elements[currentIndex], decoder.path + [.index(currentIndex)])
    }

    /// Steps past the element just decoded.
    private mutating func advancing<T>(_ value: T) -> T {
        currentIndex += 1
        return value
    }

    mutating func decodeNil() throws -> Bool {
        guard try peek().0.isNull else { return false }
        return advancing(true)
    }

    mutating func decode(_ type: Bool.Type) throws -> Bool { let (node, path) = try peek(); return advancing(try session.bool(node, path)) }
    mutating func decode(_ type: String.Type) throws -> String { let (node, path) = try peek(); return advancing(try session.string(node, path)) }
    mutating func decode(_ type: Double.Type) throws -> Double { let (node, path) = try peek(); return advancing(try session.double(node, path)) }
    mutating func decode(_ type: Float.Type) throws -> Float { let (node, path) = try peek(); return advancing(try session.float(node, path)) }
    mutating func decode(_ type: Int.Type) throws -> Int { let (node, path) = try peek(); return advancing(try session.integer(type, node, path)) }
    mutating func decode(_ type: Int8.Type) throws -> Int8 { let (node, path) = try peek(); return advancing(try session.integer(type, node, path)) }
    mutating func decode(_ type: Int16.Type) throws -> Int16 { let (node, path) = try peek(); return advancing(try session.integer(type, node, path)) }
    mutating func decode(_ type: Int32.Type) throws -> Int32 { let (node, path) = try peek(); return advancing(try session.integer(type, node, path)) }
    mutating func decode(_ type: Int64.Type) throws -> Int64 { let (node, path) = try peek(); return advancing(try session.integer(type, node, path)) }
    mutating func decode(_ type: UInt.Type) throws -> UInt { let (node, path) = try peek(); return advancing(try session.integer(type, node, path)) }
    mutating func decode(_ type: UInt8.Type) throws -> UInt8 { let (node, path) = try peek(); return advancing(try session.integer(type, node, path)) }
    mutating func decode(_ type: UInt16.Type) throws -> UInt16 { let (node, path) = try peek(); return advancing(try session.integer(type, node, path)) }
    mutating func decode(_ type: UInt32.Type) throws -> UInt32 { let (node, path) = try peek(); return advancing(try session.integer(type, node, path)) }
    mutating func decode(_ type: UInt64.Type) throws -> UInt64 { let (node, path) = try peek(); return advancing(try session.integer(type, node, path)) }

    mutating func decode<T: Decodable>(_ type: T.Type) throws -> T {
        let (node, path) = try peek()
        return advancing(try session.decode(type, node: node, path: path))
    }

    mutating func nestedContainer<NestedKey: CodingKey>(keyedBy type: NestedKey.Type) throws -> KeyedDecodingContainer<NestedKey> {
        let (node, path) = try peek()
        let container = try decoder.nested(node, path: path).container(keyedBy: type)
        currentIndex += 1
        return container
    }

    mutating func nestedUnkeyedContainer() throws -> any UnkeyedDecodingContainer {
        let (node, path) = try peek()
        let container = try decoder.nested(node, path: path).unkeyedContainer()
        currentIndex += 1
        return container
    }

    mutating func superDecoder() throws -> any Decoder {
        let (node, path) = try peek()
        currentIndex += 1
        return decoder.nested(node, path: path)
    }
}

private struct JSONSingleValueContainer: SingleValueDecodingContainer {
    let decoder: JSONTreeDecoder

    var codingPath: [any CodingKey] { decoder.codingPath }
    var session: JSONDecodingSession { decoder.session }
    var node: JSONValue { decoder.node }
    var path: [JSONPathComponent] { decoder.path }

    func decodeNil() -> Bool { node.isNull }
    func decode(_ type: Bool.Type) throws -> Bool { try session.bool(node, path) }
    func decode(_ type: String.Type) throws -> String { try session.string(node, path) }
    func decode(_ type: Double.Type) throws -> Double { try session.double(node, path) }
    func decode(_ type: Float.Type) throws -> Float { try session.float(node, path) }
    func decode(_ type: Int.Type) throws -> Int { try session.integer(type, node, path) }
    func decode(_ type: Int8.Type) throws -> Int8 { try session.integer(type, node, path) }
    func decode(_ type: Int16.Type) throws -> Int16 { try session.integer(type, node, path) }
    func decode(_ type: Int32.Type) throws -> Int32 { try session.integer(type, node, path) }
    func decode(_ type: Int64.Type) throws -> Int64 { try session.integer(type, node, path) }
    func decode(_ type: UInt.Type) throws -> UInt { try session.integer(type, node, path) }
    func decode(_ type: UInt8.Type) throws -> UInt8 { try session.integer(type, node, path) }
    func decode(_ type: UInt16.Type) throws -> UInt16 { try session.integer(type, node, path) }
    func decode(_ type: UInt32.Type) throws -> UInt32 { try session.integer(type, node, path) }
    func decode(_ type: UInt64.Type) throws -> UInt64 { try session.integer(type, node, path) }
    func decode<T: Decodable>(_ type: T.Type) throws -> T { try session.decode(type, node: node, path: path) }
}

extension JSONValue: Decodable {
    /// Only `JSONInput` can produce a `JSONValue`: it hands over the parsed node
    /// itself, positions included, so that a type can inspect a value directly.
    public init(from decoder: any Decoder) throws {
        throw DecodingError.typeMismatch(JSONValue.self, DecodingError.Context(
            codingPath: decoder.codingPath, debugDescription: "a JSONValue is decoded only by JSONInput, which keeps source positions"))
    }
}
