import Testing
@testable import SwiftVM

private struct Machine: Decodable, Equatable {
    var vcpu_count: UInt8
    var mem_size_mib: UInt32
    var smt: Bool?
    var cpu_template: CPUModel?
    var tags: [String]?
    var drives: [Drive]?
}

private enum CPUModel: String, Decodable, CaseIterable {
    case t2 = "T2", c3 = "C3", none = "None"
}

private struct Drive: Decodable, Equatable {
    var drive_id: String
    var is_root_device: Bool
    var rate: Rate?
}

private struct Rate: Decodable, Equatable {
    var size: UInt64
    var refill_time: UInt64
}

private struct Box<Value: Decodable>: Decodable {
    var v: Value
}

/// Takes any extra fields, but what it holds does not.
private struct Loose: Decodable, JSONAllowsUnknownFields {
    var a: Int
    var inner: Box<Int>?
}

private enum Level: Int, Decodable {
    case low = 1, high = 2
}

private struct OddNumber: Error, CustomStringConvertible {
    var value: Int
    var description: String { "\(value) is odd; expected an even number" }
}

/// Refuses odd numbers with its own error.
private struct Even: Decodable {
    init(from decoder: any Decoder) throws {
        let value = try decoder.singleValueContainer().decode(Int.self)
        guard value.isMultiple(of: 2) else { throw OddNumber(value: value) }
    }
}

/// Checks a field after reading it, the way a type validates its input.
private struct Window: Decodable {
    enum CodingKeys: String, CodingKey { case start, end }

    init(from decoder: any Decoder) throws {
        let fields = try decoder.container(keyedBy: CodingKeys.self)
        let start = try fields.decode(Int.self, forKey: .start)
        guard fields.contains(.end) else {
            throw DecodingError.keyNotFound(CodingKeys.end, DecodingError.Context(
                codingPath: fields.codingPath, debugDescription: "missing; a window needs start and end"))
        }
        guard try fields.decode(Int.self, forKey: .end) > start else {
            throw DecodingError.dataCorruptedError(forKey: .end, in: fields, debugDescription: "must be after start")
        }
    }
}

/// Reads through nested containers and a super decoder instead of nested types.
private struct Layered: Decodable {
    enum Keys: String, CodingKey { case outer, pairs, base }
    enum Inner: String, CodingKey { case x }

    var x: Int
    var sums: [Int]
    var base: Int

    init(from decoder: any Decoder) throws {
        let fields = try decoder.container(keyedBy: Keys.self)
        x = try fields.nestedContainer(keyedBy: Inner.self, forKey: .outer).decode(Int.self, forKey: .x)
        var pairs = try fields.nestedUnkeyedContainer(forKey: .pairs)
        sums = []
        while !pairs.isAtEnd {
            var pair = try pairs.nestedUnkeyedContainer()
            sums.append(try pair.decode(Int.self) + pair.decode(Int.self))
        }
        base = try Box<Int>(from: fields.superDecoder(forKey: .base)).v
    }
}

private class Base: Decodable {
    let a: Int
}

private final class Derived: Base {
    enum Keys: CodingKey { case b }

    let b: Int

    required init(from decoder: any Decoder) throws {
        let fields = try decoder.container(keyedBy: Keys.self)
        b = try fields.decode(Int.self, forKey: .b)
        try super.init(from: fields.superDecoder())
    }
}

/// Opens its object but reads nothing from it.
private struct NoFields: Decodable {
    init(from decoder: any Decoder) throws {
        _ = try decoder.container(keyedBy: JSONCodingKey.self)
    }
}

private func decode<T: Decodable>(_ type: T.Type, _ text: String) throws(JSONInputError) -> T {
    try JSONInput.decode(type, from: Array(text.utf8), source: "t.json")
}

/// The error decoding `text` gives, as text; nil when it decodes.
private func failure<T: Decodable>(_ type: T.Type, _ text: String) -> String? {
    do {
        _ = try decode(type, text)
        return nil
    } catch {
        return error.description
    }
}

/// The 1-based column of `needle`'s first occurrence in one-line ASCII `text`.
private func column(of needle: String, in text: String) -> Int {
    let bytes = Array(text.utf8)
    let pattern = Array(needle.utf8)
    for start in bytes.indices where bytes[start...].starts(with: pattern) { return start + 1 }
    return 0
}

@Suite("JSON value decoder")
struct JSONValueDecoderTests {
    @Test("a struct with optionals, arrays, nested objects and a raw-value enum")
    func fullStruct() throws {
        let text = """
            {
              "vcpu_count": 2,
              "mem_size_mib": 1024,
              "smt": false,
              "cpu_template": "T2",
              "tags": ["a", "b"],
              "drives": [
                {"drive_id": "root", "is_root_device": true, "rate": {"size": 18446744073709551615, "refill_time": 100}},
                {"drive_id": "data", "is_root_device": false, "rate": null}
              ]
            }
            """
        let machine = try decode(Machine.self, text)
        #expect(machine == Machine(
            vcpu_count: 2, mem_size_mib: 1024, smt: false, cpu_template: .t2, tags: ["a", "b"],
            drives: [
                Drive(drive_id: "root", is_root_device: true, rate: Rate(size: .max, refill_time: 100)),
                Drive(drive_id: "data", is_root_device: false, rate: nil),
            ]))
    }

    @Test("absent and null optionals are nil")
    func optionals() throws {
        #expect(try decode(Machine.self, "{\"vcpu_count\": 1, \"mem_size_mib\": 128, \"smt\": null}")
            == Machine(vcpu_count: 1, mem_size_mib: 128))
        #expect(try decode([Int?].self, "[1, null, 3]") == [1, nil, 3])
        #expect(try decode(Int?.self, "null") == nil)
    }

    @Test("an unknown field is an error naming it and the known ones, at the key")
    func unknownField() {
        #expect(failure(Machine.self, "{\"vcpus\": 2, \"vcpu_count\": 2, \"mem_size_mib\": 128}")
            == "t.json:1:2: vcpus: unknown field \"vcpus\"; known fields: vcpu_count, mem_size_mib, smt, cpu_template, tags, drives")
        let nested = "{\"vcpu_count\": 1, \"mem_size_mib\": 128, \"drives\": [{\"drive_id\": \"a\", \"is_root_device\": true, \"path\": \"x\"}]}"
        #expect(failure(Machine.self, nested)
            == "t.json:1:\(column(of: "\"path\"", in: nested)): drives[0].path: unknown field \"path\"; known fields: drive_id, is_root_device, rate")
        #expect(failure(NoFields.self, "{\"a\": 1}") == "t.json:1:2: a: unknown field \"a\"; this object takes no fields")
    }

    @Test("JSONAllowsUnknownFields lets one type ignore extra fields; the types inside it still refuse theirs")
    func unknownFieldsOptOut() throws {
        #expect(try decode(Loose.self, "{\"a\": 1, \"b\": 2, \"c\": {\"d\": []}}").a == 1)
        let text = "{\"a\": 1, \"b\": 2, \"inner\": {\"v\": 3, \"w\": 4}}"
        #expect(failure(Loose.self, text) == "t.json:1:\(column(of: "\"w\"", in: text)): inner.w: unknown field \"w\"; known fields: v")
    }

    @Test("a value of the wrong type is reported at its path, line and column", arguments: [
        ("{\"vcpu_count\": \"2\", \"mem_size_mib\": 128}", "t.json:1:16: vcpu_count: expected an integer, found a string"),
        ("{\"vcpu_count\": 2,\n \"mem_size_mib\": 128,\n \"smt\": 1}", "t.json:3:9: smt: expected true or false, found a number"),
        ("{\"vcpu_count\": 2, \"mem_size_mib\": 128, \"tags\": [\"a\", 5]}", "t.json:1:54: tags[1]: expected a string, found a number"),
        ("{\"vcpu_count\": 2, \"mem_size_mib\": 128, \"drives\": {}}", "t.json:1:50: drives: expected an array, found an object"),
        ("[]", "t.json:1:1: expected an object, found an array"),
    ])
    func typeMismatch(text: String, message: String) {
        #expect(failure(Machine.self, text) == message)
    }

    @Test("integers out of range, fractions and exponents name the accepted range", arguments: [
        ("300", "expected an integer from 0 to 255, found 300"),
        ("-1", "expected an integer from 0 to 255, found -1"),
        ("1.5", "expected an integer from 0 to 255, found 1.5"),
        ("2.0", "expected an integer from 0 to 255, found 2.0"),
        ("1e2", "expected an integer from 0 to 255, found 1e2"),
    ])
    func integerRange(value: String, problem: String) {
        #expect(failure(Machine.self, "{\"vcpu_count\": \(value), \"mem_size_mib\": 128}") == "t.json:1:16: vcpu_count: \(problem)")
    }

    @Test("every integer width decodes its extremes and refuses one beyond, in every kind of container")
    func integerWidths() throws {
        try checkWidth(Int.self)
        try checkWidth(Int8.self)
        try checkWidth(Int16.self)
        try checkWidth(Int32.self)
        try checkWidth(Int64.self)
        try checkWidth(UInt.self)
        try checkWidth(UInt8.self)
        try checkWidth(UInt16.self)
        try checkWidth(UInt32.self)
        try checkWidth(UInt64.self)
    }

    private func checkWidth<T: FixedWidthInteger & Decodable>(_ type: T.Type) throws {
        for extreme in [T.min, T.max] {
            #expect(try decode(T.self, "\(extreme)") == extreme)
            #expect(try decode(Box<T>.self, "{\"v\": \(extreme)}").v == extreme)
            #expect(try decode([T].self, "[0, \(extreme)]") == [0, extreme])
        }
        let aboveMax = T.max == UInt64.max ? "18446744073709551616" : "\(UInt64(T.max) + 1)"
        let belowMin = T.min == 0 ? "-1" : (T.min == Int64.min ? "-9223372036854775809" : "\(Int64(T.min) - 1)")
        for beyond in [aboveMax, belowMin] {
            let problem = "expected an integer from \(T.min) to \(T.max), found \(beyond)"
            #expect(failure(T.self, beyond) == "t.json:1:1: \(problem)")
            #expect(failure(Box<T>.self, "{\"v\": \(beyond)}") == "t.json:1:7: v: \(problem)")
            #expect(failure([T].self, "[0, \(beyond)]") == "t.json:1:5: [1]: \(problem)")
        }
    }

    @Test("-0 is zero for integers and negative zero for Double")
    func negativeZero() throws {
        #expect(try decode(UInt8.self, "-0") == 0)
        #expect(try decode(Int32.self, "-0") == 0)
        #expect(try decode(Double.self, "-0").sign == .minus)
    }

    @Test("floating point: any JSON number within range")
    func floatingPoint() throws {
        #expect(try decode([Double].self, "[1.5, 3, 1e2, -2.5E-1]") == [1.5, 3, 100, -0.25])
        #expect(try decode(Box<Float>.self, "{\"v\": 0.5}").v == 0.5)
        #expect(failure(Float.self, "1e39") == "t.json:1:1: 1e39 is beyond the range of a 32-bit floating-point number")
        #expect(failure(Double.self, "1e400") == "t.json:1:1: 1e400 is beyond the range of a 64-bit floating-point number")
        #expect(failure(Double.self, "\"1\"") == "t.json:1:1: expected a number, found a string")
    }

    @Test("a missing field is reported at its path, positioned at its object")
    func missingField() {
        #expect(failure(Machine.self, "{\"vcpu_count\": 2}") == "t.json:1:1: mem_size_mib: required field is missing")
        #expect(failure([Drive].self, "[{\"drive_id\": \"a\", \"is_root_device\": true}, {\"drive_id\": \"b\"}]")
            == "t.json:1:45: [1].is_root_device: required field is missing")
        #expect(failure(Box<String>.self, "{\"v\": null}") == "t.json:1:7: v: expected a string, found null")
    }

    @Test("an enum with raw values lists the accepted values when it can enumerate them")
    func enums() {
        #expect(failure(Machine.self, "{\"vcpu_count\": 2, \"mem_size_mib\": 128, \"cpu_template\": \"T3\"}")
            == "t.json:1:56: cpu_template: expected one of \"T2\", \"C3\", \"None\", found \"T3\"")
        // Without a list of cases, Swift's own message stays, at the right place.
        #expect(failure([Level].self, "[1, 3]")?.hasPrefix("t.json:1:5: [1]: ") == true)
        #expect(failure([Level].self, "[1, 3]")?.hasSuffix(" 3") == true)
        #expect(failure([Level].self, "[1, \"low\"]") == "t.json:1:5: [1]: expected an integer, found a string")
    }

    @Test("dictionaries decode every key")
    func dictionaries() throws {
        #expect(try decode([String: Int].self, "{\"a\": 1, \"b\": 2}") == ["a": 1, "b": 2])
        #expect(failure([String: UInt8].self, "{\"a\": 1, \"b\": 256}") == "t.json:1:15: b: expected an integer from 0 to 255, found 256")
    }

    @Test("nested containers and super decoders keep paths and the unknown-field rule")
    func nestedContainers() throws {
        let layered = try decode(Layered.self, "{\"outer\": {\"x\": 1}, \"pairs\": [[1, 2], [3, 4]], \"base\": {\"v\": 7}}")
        #expect(layered.x == 1 && layered.sums == [3, 7] && layered.base == 7)

        let extra = "{\"outer\": {\"x\": 1, \"y\": 2}, \"pairs\": [], \"base\": {\"v\": 7}}"
        #expect(failure(Layered.self, extra) == "t.json:1:\(column(of: "\"y\"", in: extra)): outer.y: unknown field \"y\"; known fields: x")
        let short = "{\"outer\": {\"x\": 1}, \"pairs\": [[1]], \"base\": {\"v\": 7}}"
        #expect(failure(Layered.self, short)
            == "t.json:1:\(column(of: "[1]", in: short)): pairs[0]: expected another element, but the array has only 1 element")
        let wrongBase = "{\"outer\": {\"x\": 1}, \"pairs\": [], \"base\": {\"v\": true}}"
        #expect(failure(Layered.self, wrongBase) == "t.json:1:\(column(of: "true", in: wrongBase)): base.v: expected an integer, found a boolean")

        let derived = try decode(Derived.self, "{\"b\": 2, \"super\": {\"a\": 1}}")
        #expect(derived.a == 1 && derived.b == 2)
        let stray = "{\"b\": 2, \"super\": {\"a\": 1, \"c\": 3}}"
        #expect(failure(Derived.self, stray) == "t.json:1:\(column(of: "\"c\"", in: stray)): super.c: unknown field \"c\"; known fields: a")
    }

    @Test("an error a type throws is placed at the value it was decoding")
    func errorsFromTypes() {
        #expect(failure(Box<[Even]>.self, "{\"v\": [2, 3]}") == "t.json:1:11: v[1]: 3 is odd; expected an even number")
        let backwards = "{\"v\": {\"start\": 5, \"end\": 2}}"
        #expect(failure(Box<Window>.self, backwards)
            == "t.json:1:\(column(of: "2}", in: backwards)): v.end: must be after start")
        #expect(failure(Box<Window>.self, "{\"v\": {\"start\": 5}}") == "t.json:1:7: v.end: missing; a window needs start and end")
    }

    @Test("a JSONValue field receives the parsed node, position included")
    func rawNodes() throws {
        let box = try decode(Box<JSONValue>.self, "{\"v\": [1, \"two\"]}")
        #expect(box.v.position == JSONPosition(line: 1, column: 7, offset: 6))
        #expect(box.v.kindDescription == "an array")
    }

    @Test("syntax errors come through the decoder unchanged")
    func syntaxErrors() {
        #expect(failure(Machine.self, "{\"vcpu_count\": 2,}")
            == "t.json:1:18: invalid JSON: expected a field name after \",\", found \"}\" (JSON allows no trailing comma)")
    }

    @Test("the error type describes itself as source:line:column: path: problem")
    func errorDescription() {
        let error = JSONInputError(source: "request body", path: "drives[0].path_on_host", line: 3, column: 7, problem: "expected a string, found null")
        #expect(error.description == "request body:3:7: drives[0].path_on_host: expected a string, found null")
        #expect(JSONInputError(source: "request body", path: "", line: 1, column: 1, problem: "p").description == "request body:1:1: p")
    }
}
