/// Where something starts in JSON input: a 1-based line and column (columns
/// count Unicode characters, not bytes) and the 0-based byte offset.
public struct JSONPosition: Hashable, Sendable, CustomStringConvertible {
    // 32-bit fields keep tree nodes small; input is limited far below 4 GiB.
    private let storedLine: UInt32
    private let storedColumn: UInt32
    private let storedOffset: UInt32

    public var line: Int { Int(storedLine) }
    public var column: Int { Int(storedColumn) }
    public var offset: Int { Int(storedOffset) }

    public init(line: Int, column: Int, offset: Int) {
        storedLine = UInt32(clamping: line)
        storedColumn = UInt32(clamping: column)
        storedOffset = UInt32(clamping: offset)
    }

    /// `line:column`, the form compilers use.
    public var description: String { "\(line):\(column)" }
}

/// One JSON value and where it starts in the input.
public struct JSONValue: Equatable, Sendable {
    public enum Content: Equatable, Sendable {
        case null
        case bool(Bool)
        case number(JSONNumber)
        case string(String)
        case array([JSONValue])
        case object(JSONObject)
    }

    public var content: Content
    public var position: JSONPosition

    public init(_ content: Content, at position: JSONPosition) {
        self.content = content
        self.position = position
    }

    public var isNull: Bool {
        if case .null = content { return true }
        return false
    }

    /// How messages name the kind of value found: "a string", "null", "an object".
    public var kindDescription: String {
        switch content {
        case .null: "null"
        case .bool: "a boolean"
        case .number: "a number"
        case .string: "a string"
        case .array: "an array"
        case .object: "an object"
        }
    }
}

/// A JSON number kept as its source text, so that no precision is lost before
/// the reader knows which type it wants.
public struct JSONNumber: Hashable, Sendable, CustomStringConvertible {
    /// The number exactly as written, e.g. `-12`, `0.5`, `1e3`.
    public let text: String

    public init(text: String) { self.text = text }

    public var description: String { text }

    /// Whether it is written without fraction or exponent.
    public var isInteger: Bool {
        !text.utf8.contains { $0 == UInt8(ascii: ".") || $0 == UInt8(ascii: "e") || $0 == UInt8(ascii: "E") }
    }

    /// The value as `T`, or nil when it is not written as an integer or does
    /// not fit. `-0` is zero for every integer type.
    public func integer<T: FixedWidthInteger>(as type: T.Type = T.self) -> T? {
        var digits = text.utf8[...]
        let negative = digits.first == UInt8(ascii: "-")
        if negative { digits = digits.dropFirst() }
        guard !digits.isEmpty else { return nil }
        var magnitude: UInt64 = 0
        for byte in digits {
            guard byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9") else { return nil }
            let (tens, overflowed) = magnitude.multipliedReportingOverflow(by: 10)
            let (sum, carried) = tens.addingReportingOverflow(UInt64(byte - UInt8(ascii: "0")))
            if overflowed || carried { return nil }
            magnitude = sum
        }
        if !negative || magnitude == 0 { return T(exactly: magnitude) }
        // Int64.min's magnitude is 2^63, one more than Int64.max.
        guard magnitude <= UInt64(1) << 63 else { return nil }
        return T(exactly: Int64(bitPattern: 0 &- magnitude))
    }

    /// The value as the nearest Double; nil when it is beyond Double's range.
    public var double: Double? {
        guard let value = Double(text), value.isFinite else { return nil }
        return value
    }
}

/// A JSON object's members in input order, with lookup by key.
///
/// Keys compare as Swift strings, so two spellings of the same text in
/// different Unicode normal forms count as the same key.
public struct JSONObject: Equatable, Sendable {
    public private(set) var members: [JSONMember] = []
    private var memberIndex: [String: Int] = [:]

    public init() {}

    public subscript(key: String) -> JSONMember? {
        memberIndex[key].map { members[$0] }
    }

    public var count: Int { members.count }

    /// Adds `member`; when its key is already present, returns the earlier
    /// member instead and changes nothing.
    @discardableResult
    public mutating func add(_ member: JSONMember) -> JSONMember? {
        if let existing = self[member.key] { return existing }
        memberIndex[member.key] = members.count
        members.append(member)
        return nil
    }
}

/// One `"key": value` pair of an object.
public struct JSONMember: Equatable, Sendable {
    public var key: String
    /// Where the key's opening quote is; the value carries its own position.
    public var keyPosition: JSONPosition
    public var value: JSONValue

    public init(key: String, keyPosition: JSONPosition, value: JSONValue) {
        self.key = key
        self.keyPosition = keyPosition
        self.value = value
    }
}

/// A strict RFC 8259 parser, as strict as Firecracker's serde_json: no
/// trailing commas, comments, NaN or byte order mark; strings must be valid
/// UTF-8; an object may not repeat a key. Every error names its position.
public enum JSONParser {
    /// Bounds that keep hostile input from exhausting the stack or memory.
    public struct Limits: Sendable {
        /// Arrays and objects nested deeper than this are refused; the parser
        /// and decoder recurse once per level.
        public var maximumDepth: Int
        /// Longer input is refused before parsing starts.
        public var maximumBytes: Int

        public init(maximumDepth: Int = 128, maximumBytes: Int = 16 << 20) {
            self.maximumDepth = maximumDepth
            self.maximumBytes = maximumBytes
        }
    }

    /// Parses `bytes` as exactly one JSON value, surrounded by optional whitespace.
    /// `source` names the input in errors: a file path, or "request body".
    public static func parse(_ bytes: [UInt8], source: String, limits: Limits = Limits()) throws(JSONInputError) -> JSONValue {
        var scanner = JSONScanner(bytes: bytes, source: source, limits: limits)
        return try scanner.document()
    }
}

/// One step of a JSON path: an object key or an array index.
enum JSONPathComponent: Hashable, Sendable {
    case key(String)
    case index(Int)
}

extension Array where Element == JSONPathComponent {
    /// The path as `a.b[2].c`; a key that is not a plain word is quoted: `a["x y"]`.
    var formatted: String {
        var text = ""
        for component in self {
            switch component {
            case .index(let index):
                text += "[\(index)]"
            case .key(let key):
                let plain = !key.isEmpty && key.utf8.allSatisfy { byte in
                    (byte >= UInt8(ascii: "a") && byte <= UInt8(ascii: "z")) || (byte >= UInt8(ascii: "A") && byte <= UInt8(ascii: "Z"))
                        || (byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9"))
                        || byte == UInt8(ascii: "_") || byte == UInt8(ascii: "-")
                }
                if plain { text += text.isEmpty ? key : ".\(key)" } else { text += "[\(jsonQuoted(key))]" }
            }
        }
        return text
    }
}

/// `text` as a JSON string literal, shortened when long, for messages.
func jsonQuoted(_ text: String, limit: Int = 60) -> String {
    var quoted = "\""
    for (count, scalar) in text.unicodeScalars.enumerated() {
        if count == limit {
            quoted += "…"
            break
        }
        switch scalar {
        case "\"": quoted += "\\\""
        case "\\": quoted += "\\\\"
        case "\n": quoted += "\\n"
        case "\t": quoted += "\\t"
        case "\r": quoted += "\\r"
        case _ where scalar.value < 0x20:
            let hex = String(scalar.value, radix: 16)
            quoted += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
        default: quoted.unicodeScalars.append(scalar)
        }
    }
    return quoted + "\""
}

/// The recursive-descent parser behind `JSONParser.parse`.
private struct JSONScanner {
    let bytes: [UInt8]
    let source: String
    let limits: JSONParser.Limits
    var offset = 0
    var line = 1
    var lineStart = 0
    /// UTF-8 continuation bytes between `lineStart` and `offset`; columns count
    /// characters, and multi-byte characters occur only inside strings, where
    /// the scanner validates them anyway.
    var continuationBytesOnLine = 0
    var depth = 0
    /// Where the value being parsed sits, for messages.
    var path: [JSONPathComponent] = []

    init(bytes: [UInt8], source: String, limits: JSONParser.Limits) {
        self.bytes = bytes
        self.source = source
        self.limits = limits
    }

    mutating func document() throws(JSONInputError) -> JSONValue {
        guard bytes.count <= limits.maximumBytes else {
            throw failure("the input is \(bytes.count) bytes; at most \(limits.maximumBytes) are accepted")
        }
        if bytes.starts(with: [0xef, 0xbb, 0xbf]) {
            throw syntaxError("a byte order mark (EF BB BF) may not start JSON; save the file as UTF-8 without one")
        }
        skipWhitespace()
        let value = try parseValue()
        skipWhitespace()
        guard offset == bytes.count else { throw unexpected("the end of the input after the JSON value") }
        return value
    }

    // MARK: Position and errors

    var current: UInt8? { offset < bytes.count ? bytes[offset] : nil }

    var position: JSONPosition {
        JSONPosition(line: line, column: offset - lineStart - continuationBytesOnLine + 1, offset: offset)
    }

    func failure(_ problem: String, at start: JSONPosition? = nil) -> JSONInputError {
        let at = start ?? position
        return JSONInputError(source: source, path: path.formatted, line: at.line, column: at.column, problem: problem)
    }

    func syntaxError(_ problem: String, at start: JSONPosition? = nil) -> JSONInputError {
        failure("invalid JSON: \(problem)", at: start)
    }

    /// "expected X, found Y", with a hint when Y suggests a JSON dialect.
    func unexpected(_ expected: String) -> JSONInputError {
        var hint = ""
        switch current {
        case UInt8(ascii: "/"), UInt8(ascii: "#"): hint = " (JSON allows no comments)"
        case UInt8(ascii: "'"): hint = " (JSON strings take double quotes)"
        case UInt8(ascii: "N"), UInt8(ascii: "I"): hint = " (JSON has no NaN or Infinity)"
        default: break
        }
        return syntaxError("expected \(expected), found \(found)\(hint)")
    }

    /// The byte at `offset`, as a reader would name it.
    var found: String {
        guard let byte = current else { return "end of input" }
        switch byte {
        case UInt8(ascii: "\n"): return "a line break"
        case UInt8(ascii: "\t"): return "a tab"
        case UInt8(ascii: "\""): return "a double quote"
        case 0x20..<0x7f: return "\"\(Character(Unicode.Scalar(byte)))\""
        default: return "byte \(hex(byte))"
        }
    }

    func hex(_ byte: UInt8) -> String {
        byte < 0x10 ? "0x0\(String(byte, radix: 16))" : "0x\(String(byte, radix: 16))"
    }

    // MARK: Values

    mutating func skipWhitespace() {
        while let byte = current {
            switch byte {
            case UInt8(ascii: " "), UInt8(ascii: "\t"), UInt8(ascii: "\r"):
                offset += 1
            case UInt8(ascii: "\n"):
                offset += 1
                line += 1
                lineStart = offset
                continuationBytesOnLine = 0
            default:
                return
            }
        }
    }

    mutating func parseValue() throws(JSONInputError) -> JSONValue {
        let start = position
        guard let byte = current else { throw unexpected("a value") }
        switch byte {
        case UInt8(ascii: "{"): return JSONValue(.object(try parseObject()), at: start)
        case UInt8(ascii: "["): return JSONValue(.array(try parseArray()), at: start)
        case UInt8(ascii: "\""): return JSONValue(.string(try parseString()), at: start)
        case UInt8(ascii: "t"): try literal("true"); return JSONValue(.bool(true), at: start)
        case UInt8(ascii: "f"): try literal("false"); return JSONValue(.bool(false), at: start)
        case UInt8(ascii: "n"): try literal("null"); return JSONValue(.null, at: start)
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return JSONValue(.number(try parseNumber()), at: start)
        default: throw unexpected("a value")
        }
    }

    mutating func enterContainer() throws(JSONInputError) {
        depth += 1
        guard depth <= limits.maximumDepth else {
            throw failure("arrays and objects are nested more than \(limits.maximumDepth) levels deep")
        }
    }

    mutating func parseObject() throws(JSONInputError) -> JSONObject {
        try enterContainer()
        offset += 1
        skipWhitespace()
        var object = JSONObject()
        if current == UInt8(ascii: "}") {
            offset += 1
            depth -= 1
            return object
        }
        while true {
            guard current == UInt8(ascii: "\"") else { throw unexpected("a field name in double quotes") }
            let keyPosition = position
            let key = try parseString()
            path.append(.key(key))
            if let first = object[key] {
                throw failure("duplicate field \(jsonQuoted(key)); it first appears at line \(first.keyPosition.line), column \(first.keyPosition.column)", at: keyPosition)
            }
            skipWhitespace()
            guard current == UInt8(ascii: ":") else { throw unexpected("\":\" after the field name") }
            offset += 1
            skipWhitespace()
            let value = try parseValue()
            path.removeLast()
            object.add(JSONMember(key: key, keyPosition: keyPosition, value: value))
            skipWhitespace()
            if current == UInt8(ascii: "}") { break }
            guard current == UInt8(ascii: ",") else { throw unexpected("\",\" or \"}\"") }
            offset += 1
            skipWhitespace()
            if current == UInt8(ascii: "}") {
                throw syntaxError("expected a field name after \",\", found \"}\" (JSON allows no trailing comma)")
            }
        }
        offset += 1
        depth -= 1
        return object
    }

    mutating func parseArray() throws(JSONInputError) -> [JSONValue] {
        try enterContainer()
        offset += 1
        skipWhitespace()
        var elements: [JSONValue] = []
        if current == UInt8(ascii: "]") {
            offset += 1
            depth -= 1
            return elements
        }
        while true {
            path.append(.index(elements.count))
            elements.append(try parseValue())
            path.removeLast()
            skipWhitespace()
            if current == UInt8(ascii: "]") { break }
            guard current == UInt8(ascii: ",") else { throw unexpected("\",\" or \"]\"") }
            offset += 1
            skipWhitespace()
            if current == UInt8(ascii: "]") {
                throw syntaxError("expected a value after \",\", found \"]\" (JSON allows no trailing comma)")
            }
        }
        offset += 1
        depth -= 1
        return elements
    }

    mutating func literal(_ word: StaticString) throws(JSONInputError) {
        let start = position
        let expected = word.withUTF8Buffer { Array($0) }
        guard bytes.count - offset >= expected.count, bytes[offset..<offset + expected.count].elementsEqual(expected) else {
            let letters = bytes[offset...].prefix { ($0 | 0x20) >= UInt8(ascii: "a") && ($0 | 0x20) <= UInt8(ascii: "z") }.prefix(20)
            throw syntaxError("expected \(word), found \(jsonQuoted(String(decoding: letters, as: UTF8.self)))", at: start)
        }
        offset += expected.count
    }

    /// -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?, RFC 8259 section 6.
    mutating func parseNumber() throws(JSONInputError) -> JSONNumber {
        let start = offset
        let startPosition = position
        if current == UInt8(ascii: "-") { offset += 1 }
        if current == UInt8(ascii: "0") {
            offset += 1
            if let next = current, isDigit(next) {
                throw syntaxError("a number may not start with 0 followed by more digits", at: startPosition)
            }
        } else {
            try digits(after: "\"-\"")
        }
        if current == UInt8(ascii: ".") {
            offset += 1
            try digits(after: "the decimal point")
        }
        if current == UInt8(ascii: "e") || current == UInt8(ascii: "E") {
            offset += 1
            if current == UInt8(ascii: "+") || current == UInt8(ascii: "-") { offset += 1 }
            try digits(after: "the exponent mark")
        }
        return JSONNumber(text: String(decoding: bytes[start..<offset], as: UTF8.self))
    }

    func isDigit(_ byte: UInt8) -> Bool { byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9") }

    mutating func digits(after what: String) throws(JSONInputError) {
        guard let first = current, isDigit(first) else { throw unexpected("a digit after \(what)") }
        while let byte = current, isDigit(byte) { offset += 1 }
    }

    // MARK: Strings

    /// From the opening quote to past the closing one.
    mutating func parseString() throws(JSONInputError) -> String {
        let start = position
        offset += 1
        var segmentStart = offset
        // Filled only once an escape appears; most strings are copied in one piece.
        var unescaped: [UInt8] = []
        var escaped = false
        while true {
            guard let byte = current else {
                throw syntaxError("the string that starts at line \(start.line), column \(start.column) is not closed before the end of input")
            }
            switch byte {
            case UInt8(ascii: "\""):
                let text: String
                if escaped {
                    unescaped.append(contentsOf: bytes[segmentStart..<offset])
                    text = String(decoding: unescaped, as: UTF8.self)
                } else {
                    text = String(decoding: bytes[segmentStart..<offset], as: UTF8.self)
                }
                offset += 1
                return text
            case UInt8(ascii: "\\"):
                unescaped.append(contentsOf: bytes[segmentStart..<offset])
                escaped = true
                try escape(into: &unescaped)
                segmentStart = offset
            case UInt8(ascii: "\n"):
                throw syntaxError("a line break inside a string must be written \\n")
            case 0..<0x20:
                throw syntaxError("control character \(hex(byte)) inside a string must be written as an escape such as \\u00\(hex(byte).dropFirst(2))")
            case 0x20..<0x80:
                offset += 1
            default:
                try multiByteCharacter()
            }
        }
    }

    /// From a backslash to past its escape sequence, appending what it stands for.
    mutating func escape(into text: inout [UInt8]) throws(JSONInputError) {
        let start = position
        offset += 1
        guard let letter = current else { throw unexpected("an escape sequence after \\") }
        let simple: UInt8? = switch letter {
        case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"): letter
        case UInt8(ascii: "b"): 0x08
        case UInt8(ascii: "f"): 0x0c
        case UInt8(ascii: "n"): 0x0a
        case UInt8(ascii: "r"): 0x0d
        case UInt8(ascii: "t"): 0x09
        default: nil
        }
        if let simple {
            offset += 1
            text.append(simple)
            return
        }
        guard letter == UInt8(ascii: "u") else {
            let written = letter >= 0x20 && letter < 0x7f ? "\\\(Character(Unicode.Scalar(letter)))" : "\\ and byte \(hex(letter))"
            throw syntaxError("\(written) is not a JSON escape; use \\\", \\\\, \\/, \\b, \\f, \\n, \\r, \\t or \\u and 4 hexadecimal digits", at: start)
        }
        offset += 1
        let unit = try hexQuad()
        var scalarValue = unit
        switch unit {
        case 0xd800..<0xdc00:
            // UTF-16 escapes a character beyond U+FFFF as a high and low surrogate pair.
            guard bytes.count - offset >= 2, bytes[offset] == UInt8(ascii: "\\"), bytes[offset + 1] == UInt8(ascii: "u") else {
                throw syntaxError("\\u\(hexUnit(unit)) is a high surrogate and must be followed by a \\u escape of a low surrogate (DC00 to DFFF)", at: start)
            }
            let lowStart = position
            offset += 2
            let low = try hexQuad()
            guard (0xdc00..<0xe000).contains(low) else {
                throw syntaxError("\\u\(hexUnit(unit)) is a high surrogate, but \\u\(hexUnit(low)) after it is not a low surrogate (DC00 to DFFF)", at: lowStart)
            }
            scalarValue = 0x10000 + ((unit - 0xd800) << 10) + (low - 0xdc00)
        case 0xdc00..<0xe000:
            throw syntaxError("\\u\(hexUnit(unit)) is a low surrogate without a high surrogate before it", at: start)
        default:
            break
        }
        guard let scalar = Unicode.Scalar(scalarValue) else {
            throw syntaxError("\\u\(hexUnit(unit)) is not a Unicode character", at: start)
        }
        Unicode.UTF8.encode(scalar) { text.append($0) }
    }

    func hexUnit(_ unit: UInt32) -> String {
        let digits = String(unit, radix: 16, uppercase: true)
        return String(repeating: "0", count: max(0, 4 - digits.count)) + digits
    }

    mutating func hexQuad() throws(JSONInputError) -> UInt32 {
        var value: UInt32 = 0
        for _ in 0..<4 {
            guard let byte = current, let digit = Character(Unicode.Scalar(byte)).hexDigitValue, byte < 0x80 else {
                throw unexpected("4 hexadecimal digits after \\u")
            }
            value = value << 4 | UInt32(digit)
            offset += 1
        }
        return value
    }

    /// Validates one UTF-8 sequence of 2 to 4 bytes (RFC 3629 section 4) and steps past it.
    mutating func multiByteCharacter() throws(JSONInputError) {
        let lead = bytes[offset]
        let length: Int
        // The second byte's range is narrower after some leads: that is what
        // rules out overlong forms, UTF-16 surrogates and values past U+10FFFF.
        var second: ClosedRange<UInt8> = 0x80...0xbf
        var narrowed = ""
        switch lead {
        case 0xc2...0xdf: length = 2
        case 0xe0: (length, second, narrowed) = (3, 0xa0...0xbf, "an overlong encoding")
        case 0xe1...0xec, 0xee...0xef: length = 3
        case 0xed: (length, second, narrowed) = (3, 0x80...0x9f, "a UTF-16 surrogate, which UTF-8 may not encode")
        case 0xf0: (length, second, narrowed) = (4, 0x90...0xbf, "an overlong encoding")
        case 0xf1...0xf3: length = 4
        case 0xf4: (length, second, narrowed) = (4, 0x80...0x8f, "a value beyond U+10FFFF")
        case 0x80...0xbf:
            throw syntaxError("invalid UTF-8: byte \(hex(lead)) continues a character, but no character started before it")
        case 0xc0, 0xc1:
            throw syntaxError("invalid UTF-8: byte \(hex(lead)) starts an overlong encoding")
        default:
            throw syntaxError("invalid UTF-8: byte \(hex(lead)) never occurs in UTF-8")
        }
        for index in 1..<length {
            guard offset + index < bytes.count else {
                throw syntaxError("invalid UTF-8: the input ends inside a \(length)-byte character that starts with \(hex(lead))")
            }
            let byte = bytes[offset + index]
            if index == 1 && !second.contains(byte) && (0x80...0xbf).contains(byte) {
                throw syntaxError("invalid UTF-8: bytes \(hex(lead)) \(hex(byte)) start \(narrowed)")
            }
            guard (0x80...0xbf).contains(byte) else {
                throw syntaxError("invalid UTF-8: byte \(hex(lead)) starts a \(length)-byte character, but byte \(hex(byte)) in it does not continue one")
            }
        }
        offset += length
        continuationBytesOnLine += length - 1
    }
}
