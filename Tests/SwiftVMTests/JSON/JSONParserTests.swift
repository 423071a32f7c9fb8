import Testing
@testable import SwiftVM

private func parse(_ text: String, limits: JSONParser.Limits = JSONParser.Limits()) throws(JSONInputError) -> JSONValue {
    try JSONParser.parse(Array(text.utf8), source: "t.json", limits: limits)
}

/// The error `bytes` give, as text; nil when they parse.
private func failure(_ bytes: [UInt8], limits: JSONParser.Limits = JSONParser.Limits()) -> JSONInputError? {
    do {
        _ = try JSONParser.parse(bytes, source: "t.json", limits: limits)
        return nil
    } catch {
        return error
    }
}

private func string(_ value: JSONValue) -> String? {
    if case .string(let text) = value.content { return text }
    return nil
}

@Suite("JSON parser")
struct JSONParserTests {
    @Test("every value records its line, column and byte offset")
    func positions() throws {
        let root = try parse("{\n  \"a\": [1, \"x\"],\n  \"b\": null\n}")
        #expect(root.position == JSONPosition(line: 1, column: 1, offset: 0))
        guard case .object(let object) = root.content else {
            Issue.record("expected an object")
            return
        }
        #expect(object.members.map(\.key) == ["a", "b"])
        let a = try #require(object["a"])
        #expect(a.keyPosition == JSONPosition(line: 2, column: 3, offset: 4))
        #expect(a.value.position == JSONPosition(line: 2, column: 8, offset: 9))
        guard case .array(let elements) = a.value.content else {
            Issue.record("expected an array")
            return
        }
        #expect(elements.map(\.position) == [JSONPosition(line: 2, column: 9, offset: 10), JSONPosition(line: 2, column: 12, offset: 13)])
        #expect(elements[0].content == .number(JSONNumber(text: "1")))
        #expect(string(elements[1]) == "x")
        let b = try #require(object["b"])
        #expect(b.keyPosition == JSONPosition(line: 3, column: 3, offset: 21))
        #expect(b.value.position == JSONPosition(line: 3, column: 8, offset: 26))
        #expect(b.value.isNull)
    }

    @Test("scalars at the top level, surrounded by whitespace", arguments: [
        (" true ", JSONValue.Content.bool(true)), ("false", .bool(false)), ("\tnull\r\n", .null),
        ("-12.5e+3", .number(JSONNumber(text: "-12.5e+3"))), ("\"\"", .string("")), ("[]", .array([])), ("{}", .object(JSONObject())),
    ])
    func scalars(text: String, content: JSONValue.Content) throws {
        #expect(try parse(text).content == content)
    }

    @Test("each syntax error names its line, column and path", arguments: [
        ("{\"a\": [}", "t.json:1:8: a[0]: invalid JSON: expected a value, found \"}\""),
        ("[1,2,]", "t.json:1:6: invalid JSON: expected a value after \",\", found \"]\" (JSON allows no trailing comma)"),
        ("{\"a\": 1,\n}", "t.json:2:1: invalid JSON: expected a field name after \",\", found \"}\" (JSON allows no trailing comma)"),
        ("{\"a\" 1}", "t.json:1:6: a: invalid JSON: expected \":\" after the field name, found \"1\""),
        ("[1 2]", "t.json:1:4: invalid JSON: expected \",\" or \"]\", found \"2\""),
        ("[1", "t.json:1:3: invalid JSON: expected \",\" or \"]\", found end of input"),
        ("{\"a\": 1", "t.json:1:8: invalid JSON: expected \",\" or \"}\", found end of input"),
        ("\"abc", "t.json:1:5: invalid JSON: the string that starts at line 1, column 1 is not closed before the end of input"),
        ("", "t.json:1:1: invalid JSON: expected a value, found end of input"),
        ("  \n ", "t.json:2:2: invalid JSON: expected a value, found end of input"),
        ("{\"a\": 1 // note\n}", "t.json:1:9: invalid JSON: expected \",\" or \"}\", found \"/\" (JSON allows no comments)"),
        ("/* note */ {}", "t.json:1:1: invalid JSON: expected a value, found \"/\" (JSON allows no comments)"),
        ("[NaN]", "t.json:1:2: [0]: invalid JSON: expected a value, found \"N\" (JSON has no NaN or Infinity)"),
        ("[-Infinity]", "t.json:1:3: [0]: invalid JSON: expected a digit after \"-\", found \"I\" (JSON has no NaN or Infinity)"),
        ("{'a': 1}", "t.json:1:2: invalid JSON: expected a field name in double quotes, found \"'\" (JSON strings take double quotes)"),
        ("{a: 1}", "t.json:1:2: invalid JSON: expected a field name in double quotes, found \"a\""),
        ("[01]", "t.json:1:2: [0]: invalid JSON: a number may not start with 0 followed by more digits"),
        ("[1.]", "t.json:1:4: [0]: invalid JSON: expected a digit after the decimal point, found \"]\""),
        ("[1e+]", "t.json:1:5: [0]: invalid JSON: expected a digit after the exponent mark, found \"]\""),
        ("[+1]", "t.json:1:2: [0]: invalid JSON: expected a value, found \"+\""),
        ("[.5]", "t.json:1:2: [0]: invalid JSON: expected a value, found \".\""),
        ("[tru]", "t.json:1:2: [0]: invalid JSON: expected true, found \"tru\""),
        ("[True]", "t.json:1:2: [0]: invalid JSON: expected a value, found \"T\""),
        ("{} {}", "t.json:1:4: invalid JSON: expected the end of the input after the JSON value, found \"{\""),
        ("[\"\\x\"]", "t.json:1:3: [0]: invalid JSON: \\x is not a JSON escape; use \\\", \\\\, \\/, \\b, \\f, \\n, \\r, \\t or \\u and 4 hexadecimal digits"),
        ("[\"\\u12\"]", "t.json:1:7: [0]: invalid JSON: expected 4 hexadecimal digits after \\u, found a double quote"),
        ("[\"\\uD800\"]", "t.json:1:3: [0]: invalid JSON: \\uD800 is a high surrogate and must be followed by a \\u escape of a low surrogate (DC00 to DFFF)"),
        ("[\"\\uD800\\u0041\"]", "t.json:1:9: [0]: invalid JSON: \\uD800 is a high surrogate, but \\u0041 after it is not a low surrogate (DC00 to DFFF)"),
        ("[\"\\uDC00\"]", "t.json:1:3: [0]: invalid JSON: \\uDC00 is a low surrogate without a high surrogate before it"),
        ("[\"a\nb\"]", "t.json:1:4: [0]: invalid JSON: a line break inside a string must be written \\n"),
        ("\"a\tb\"", "t.json:1:3: invalid JSON: control character 0x09 inside a string must be written as an escape such as \\u0009"),
        ("{\n  \"a\": 1,\n  \"b\": x\n}", "t.json:3:8: b: invalid JSON: expected a value, found \"x\""),
        // Columns count characters: "é" is two bytes but one column.
        ("[\"é\", x]", "t.json:1:7: [1]: invalid JSON: expected a value, found \"x\""),
        ("{\"a b\": [}", "t.json:1:10: [\"a b\"][0]: invalid JSON: expected a value, found \"}\""),
        ("\u{FEFF}{}", "t.json:1:1: invalid JSON: a byte order mark (EF BB BF) may not start JSON; save the file as UTF-8 without one"),
    ])
    func syntaxErrors(text: String, message: String) {
        #expect(failure(Array(text.utf8))?.description == message)
    }

    @Test("a repeated key is an error naming the key and both positions", arguments: [
        ("{\"a\": 1,\n \"a\": 2}", "t.json:2:2: a: duplicate field \"a\"; it first appears at line 1, column 2"),
        ("[{\"x\": {\"y\": 1, \"y\": 2}}]", "t.json:1:17: [0].x.y: duplicate field \"y\"; it first appears at line 1, column 9"),
    ])
    func duplicateKeys(text: String, message: String) {
        #expect(failure(Array(text.utf8))?.description == message)
    }

    @Test("invalid UTF-8 in a string is an error at the offending byte", arguments: [
        ([0xff], "t.json:1:3: [0]: invalid JSON: invalid UTF-8: byte 0xff never occurs in UTF-8"),
        ([0xf5, 0x80, 0x80, 0x80], "t.json:1:3: [0]: invalid JSON: invalid UTF-8: byte 0xf5 never occurs in UTF-8"),
        ([0x80], "t.json:1:3: [0]: invalid JSON: invalid UTF-8: byte 0x80 continues a character, but no character started before it"),
        ([0xe2, 0x82], "t.json:1:3: [0]: invalid JSON: invalid UTF-8: byte 0xe2 starts a 3-byte character, but byte 0x22 in it does not continue one"),
        ([0xc0, 0xaf], "t.json:1:3: [0]: invalid JSON: invalid UTF-8: byte 0xc0 starts an overlong encoding"),
        ([0xe0, 0x80, 0xaf], "t.json:1:3: [0]: invalid JSON: invalid UTF-8: bytes 0xe0 0x80 start an overlong encoding"),
        ([0xf0, 0x80, 0x80, 0xaf], "t.json:1:3: [0]: invalid JSON: invalid UTF-8: bytes 0xf0 0x80 start an overlong encoding"),
        ([0xed, 0xa0, 0x80], "t.json:1:3: [0]: invalid JSON: invalid UTF-8: bytes 0xed 0xa0 start a UTF-16 surrogate, which UTF-8 may not encode"),
        ([0xf4, 0x90, 0x80, 0x80], "t.json:1:3: [0]: invalid JSON: invalid UTF-8: bytes 0xf4 0x90 start a value beyond U+10FFFF"),
        ([0xc3, 0xa9, 0xff], "t.json:1:4: [0]: invalid JSON: invalid UTF-8: byte 0xff never occurs in UTF-8"),
    ] as [([UInt8], String)])
    func invalidUTF8(inside: [UInt8], message: String) {
        let bytes = Array("[\"".utf8) + inside + Array("\"]".utf8)
        #expect(failure(bytes)?.description == message)
    }

    @Test("UTF-8 cut off by the end of input, and a stray byte outside a string")
    func invalidUTF8AtEdges() {
        #expect(failure(Array("[\"".utf8) + [0xe2])?.description
            == "t.json:1:3: [0]: invalid JSON: invalid UTF-8: the input ends inside a 3-byte character that starts with 0xe2")
        #expect(failure([UInt8(ascii: "["), 0xff, UInt8(ascii: "]")])?.description
            == "t.json:1:2: [0]: invalid JSON: expected a value, found byte 0xff")
    }

    @Test("valid UTF-8 of every length reads back unchanged")
    func validUTF8() throws {
        #expect(string(try parse("\"aé€😀\"")) == "aé€😀")
        #expect(string(try parse("\"\u{10FFFF}\u{FFFF}\u{E000}\u{D7FF}\"")) == "\u{10FFFF}\u{FFFF}\u{E000}\u{D7FF}")
    }

    @Test("escapes, including surrogate pairs and NUL")
    func escapes() throws {
        let text = #""\"\\\/\b\f\n\r\t\u0041\u00e9\u20AC\ud83d\ude00\u0000 plain""#
        #expect(string(try parse(text)) == "\"\\/\u{8}\u{c}\n\r\tAé€😀\u{0} plain")
    }

    @Test("nesting at the limit parses; one level deeper is refused")
    func depthLimit() throws {
        let deepest = String(repeating: "[", count: 128) + String(repeating: "]", count: 128)
        _ = try parse(deepest)
        let error = try #require(failure(Array((String(repeating: "[", count: 129) + String(repeating: "]", count: 129)).utf8)))
        #expect(error.problem == "arrays and objects are nested more than 128 levels deep")
        #expect(error.line == 1 && error.column == 129)
        #expect(failure(Array("[[1]]".utf8), limits: JSONParser.Limits(maximumDepth: 1))?.column == 2)
    }

    @Test("hostile nesting is refused without exhausting the stack", arguments: ["[", "{\"a\":", "[{\"a\":"])
    func hostileNesting(opener: String) throws {
        let error = try #require(failure(Array(String(repeating: opener, count: 100_000).utf8)))
        #expect(error.problem.contains("nested more than 128 levels"))
    }

    @Test("input over the size limit is refused before parsing")
    func sizeLimit() {
        #expect(failure(Array("[1,2]".utf8), limits: JSONParser.Limits(maximumBytes: 4))?.description
            == "t.json:1:1: the input is 5 bytes; at most 4 are accepted")
        #expect(failure(Array("[1,2]".utf8), limits: JSONParser.Limits(maximumBytes: 5)) == nil)
    }

    @Test("numbers keep their text; integers are exact to the limits of 64 bits")
    func numbers() throws {
        #expect(JSONNumber(text: "18446744073709551615").integer(as: UInt64.self) == .max)
        #expect(JSONNumber(text: "18446744073709551616").integer(as: UInt64.self) == nil)
        #expect(JSONNumber(text: "18446744073709551615").integer(as: Int64.self) == nil)
        #expect(JSONNumber(text: "9223372036854775807").integer(as: Int64.self) == .max)
        #expect(JSONNumber(text: "-9223372036854775808").integer(as: Int64.self) == .min)
        #expect(JSONNumber(text: "-9223372036854775809").integer(as: Int64.self) == nil)
        #expect(JSONNumber(text: "-1").integer(as: UInt8.self) == nil)
        #expect(JSONNumber(text: "255").integer(as: UInt8.self) == 255)
        #expect(JSONNumber(text: "256").integer(as: UInt8.self) == nil)
        #expect(JSONNumber(text: "-128").integer(as: Int8.self) == -128)
        #expect(JSONNumber(text: "99999999999999999999999999").integer(as: UInt64.self) == nil)
        // -0 is zero, for unsigned types too; as a Double it keeps its sign.
        #expect(JSONNumber(text: "-0").integer(as: UInt8.self) == 0)
        #expect(JSONNumber(text: "-0").integer(as: Int32.self) == 0)
        #expect(JSONNumber(text: "-0").double?.sign == .minus)
        // Fractions and exponents are not integers, even when their value is whole.
        for text in ["1.0", "1e2", "1E2", "0.5"] {
            #expect(JSONNumber(text: text).integer(as: Int.self) == nil)
            #expect(!JSONNumber(text: text).isInteger)
        }
        #expect(JSONNumber(text: "-12").isInteger)
        #expect(JSONNumber(text: "1e2").double == 100)
        #expect(JSONNumber(text: "0.1").double == 0.1)
        #expect(JSONNumber(text: "1e400").double == nil)
        // The parser hands over the text exactly as written.
        #expect(try parse("[12345678901234567890123]").content == .array([
            JSONValue(.number(JSONNumber(text: "12345678901234567890123")), at: JSONPosition(line: 1, column: 2, offset: 1)),
        ]))
    }

    @Test("random bytes never crash the parser; every error has a position")
    func randomInput() {
        var random = JSONFuzzRandom(seed: 0x5eed)
        let alphabet = Array("{}[],:\"\\ \n0123456789-+.eEtrufalsn".utf8) + [0xc3, 0xa9, 0xff, 0xe2, 0x80]
        for _ in 0..<3000 {
            let length = Int(random.next() % 40)
            let bytes = (0..<length).map { _ in alphabet[Int(random.next() % UInt64(alphabet.count))] }
            if let error = failure(bytes) {
                #expect(error.line >= 1 && error.column >= 1 && !error.problem.isEmpty)
            }
        }
    }
}

/// A small deterministic generator, so that failures reproduce.
struct JSONFuzzRandom: RandomNumberGenerator {
    var state: UInt64

    init(seed: UInt64) { state = seed }

    mutating func next() -> UInt64 {
        state &+= 0x9e37_79b9_7f4a_7c15
        var z = state
        z = (z ^ (z >> 30)) &* 0xbf58_476d_1ce4_e5b9
        z = (z ^ (z >> 27)) &* 0x94d0_49bb_1331_11eb
        return z ^ (z >> 31)
    }
}
