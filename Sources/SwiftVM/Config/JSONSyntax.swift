
/// A strict RFC 8259 syntax check that says where the first error is.
struct JSONSyntax {
    let bytes: [UInt8]
    var offset = 0
    var depth = 0

    /// Deep enough for any template; stops a hostile file from exhausting the stack.
    static let maximumDepth = 64

    struct Failure: Error {
        var offset: Int
        var problem: String
    }

    /// nil when `json` is one well-formed JSON value; otherwise a message with line and column.
    static func firstError(in json: [UInt8]) -> String? {
        var syntax = JSONSyntax(bytes: json)
        do throws(Failure) {
            try syntax.value()
            syntax.skipWhitespace()
            if syntax.offset < json.count { throw syntax.failure("unexpected \(syntax.found) after the JSON value") }
            return nil
        } catch {
            let before = json[..<min(error.offset, json.count)]
            let line = before.reduce(1) { $1 == UInt8(ascii: "\n") ? $0 + 1 : $0 }
            let lineStart = before.lastIndex(of: UInt8(ascii: "\n")).map { $0 + 1 } ?? 0
            return "invalid JSON at line \(line), column \(error.offset - lineStart + 1) (byte offset \(error.offset)): \(error.problem)"
        }
    }

    var current: UInt8? { offset < bytes.count ? bytes[offset] : nil }

    /// The byte at `offset`, as a reader would name it.
    var found: String {
        guard let byte = current else { return "end of file" }
        if byte >= 0x20 && byte < 0x7f { return "\"\(Character(Unicode.Scalar(byte)))\"" }
        return "byte 0x\(String(byte, radix: 16))"
    }

    func failure(_ problem: String) -> Failure { Failure(offset: offset, problem: problem) }

    mutating func skipWhitespace() {
        while let byte = current, byte == 0x20 || byte == 0x09 || byte == 0x0a || byte == 0x0d { offset += 1 }
    }

    mutating func expect(_ byte: UInt8, _ what: String) throws(Failure) {
        guard current == byte else { throw failure("expected \(what), found \(found)") }
        offset += 1
    }

    mutating func value() throws(Failure) {
        skipWhitespace()
        guard let byte = current else { throw failure("expected a value, found end of file") }
        switch byte {
        case UInt8(ascii: "{"): try container(close: UInt8(ascii: "}"), keyed: true)
        case UInt8(ascii: "["): try container(close: UInt8(ascii: "]"), keyed: false)
        case UInt8(ascii: "\""): try string()
        case UInt8(ascii: "t"): try literal("true")
        case UInt8(ascii: "f"): try literal("false")
        case UInt8(ascii: "n"): try literal("null")
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): try number()
        default: throw failure("expected a value, found \(found)")
        }
    }

    /// An object (`keyed`) or array, from its opening bracket.
    mutating func container(close: UInt8, keyed: Bool) throws(Failure) {
        depth += 1
        guard depth <= Self.maximumDepth else { throw failure("nested more than \(Self.maximumDepth) levels deep") }
        offset += 1
        skipWhitespace()
        if current == close {
            offset += 1
            depth -= 1
            return
        }
        while true {
            if keyed {
                skipWhitespace()
                guard current == UInt8(ascii: "\"") else { throw failure("expected a field name in double quotes, found \(found)") }
                try string()
                skipWhitespace()
                try expect(UInt8(ascii: ":"), "\":\"")
            }
            try value()
            skipWhitespace()
            if current == close { break }
            try expect(UInt8(ascii: ","), "\",\" or \"\(Character(Unicode.Scalar(close)))\"")
        }
        offset += 1
        depth -= 1
    }

    mutating func string() throws(Failure) {
        offset += 1
        while let byte = current {
            switch byte {
            case UInt8(ascii: "\""):
                offset += 1
                return
            case UInt8(ascii: "\\"):
                offset += 1
                guard let escaped = current else { continue }
                if escaped == UInt8(ascii: "u") {
                    for _ in 0..<4 {
                        offset += 1
                        guard let digit = current, Character(Unicode.Scalar(digit)).isHexDigit else {
                            throw failure("expected 4 hexadecimal digits after \\u, found \(found)")
                        }
                    }
                } else if !Array("\"\\/bfnrt".utf8).contains(escaped) {
                    throw failure("\(found) cannot follow \\ in a string")
                }
                offset += 1
            case 0..<0x20:
                throw failure("control character \(found) inside a string")
            default:
                offset += 1
            }
        }
        throw failure("the string is not closed before the end of file")
    }

    mutating func literal(_ word: String) throws(Failure) {
        for byte in word.utf8 {
            guard current == byte else { throw failure("expected \(word), found \(found)") }
            offset += 1
        }
    }

    mutating func number() throws(Failure) {
        if current == UInt8(ascii: "-") { offset += 1 }
        if current == UInt8(ascii: "0") { offset += 1 } else { try digits() }
        if current == UInt8(ascii: ".") {
            offset += 1
            try digits()
        }
        if current == UInt8(ascii: "e") || current == UInt8(ascii: "E") {
            offset += 1
            if current == UInt8(ascii: "+") || current == UInt8(ascii: "-") { offset += 1 }
            try digits()
        }
    }

    mutating func digits() throws(Failure) {
        guard let first = current, (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(first) else {
            throw failure("expected a digit, found \(found)")
        }
        while let byte = current, (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte) { offset += 1 }
    }
}
