import FoundationEssentials
import Testing
@testable import SwiftVM
import SwiftVMBoot

private let keepAll = "0b" + String(repeating: "x", count: 32)

/// One cpuid_modifiers entry in template JSON.
private func leafJSON(_ leaf: String = "\"0x1\"", subleaf: String = "\"0x0\"", flags: String = "0",
                      modifiers: [(register: String, bitmap: String)] = [("\"eax\"", "\"\(keepAll)\"")]) -> String {
    let items = modifiers.map { "{\"register\": \($0.register), \"bitmap\": \($0.bitmap)}" }
    return "{\"leaf\": \(leaf), \"subleaf\": \(subleaf), \"flags\": \(flags), \"modifiers\": [\(items.joined(separator: ", "))]}"
}

private func templateJSON(_ leaves: [String]) -> String {
    "{\"cpuid_modifiers\": [\(leaves.joined(separator: ", "))]}"
}

private let keepAll64 = "0b" + String(repeating: "x", count: 64)

/// One msr_modifiers entry in template JSON.
private func msrJSON(_ address: String) -> String {
    "{\"addr\": \(address), \"bitmap\": \"\(keepAll64)\"}"
}

private func msrTemplateJSON(_ addresses: [String]) -> String {
    "{\"msr_modifiers\": [\(addresses.map(msrJSON).joined(separator: ", "))]}"
}

/// The error parsing `json` gives; nil when it parses.
private func parseError(_ json: [UInt8]) -> CPUTemplateError? {
    do {
        _ = try CPUTemplateFile.parse(json, source: "/t.json")
        return nil
    } catch {
        return error
    }
}

private func parseError(_ json: String) -> CPUTemplateError? { parseError(Array(json.utf8)) }

/// The 1-based column where the last `needle` in one-line ASCII `text` starts.
private func column(ofLast needle: String, in text: String) -> Int {
    let bytes = Array(text.utf8)
    let pattern = Array(needle.utf8)
    return (bytes.indices.last { bytes[$0...].starts(with: pattern) } ?? -1) + 1
}

private let documentedExampleJSON = """
    {
      "kvm_capabilities": ["!56"],
      "cpuid_modifiers": [
        { "leaf": "0x1", "subleaf": "0x0", "flags": 0,
          "modifiers": [ { "register": "eax", "bitmap": "0bxxxx000000000011xx00011011110010" } ] }
      ],
      "msr_modifiers": [
        { "addr": "0x10a", "bitmap": "0b0000000000000000000000000000000000000000000000000000000000000000" }
      ]
    }
    """

@Suite("CPU template files")
struct CPUTemplateFileTests {
    @Test("Firecracker's documented example reads as written")
    func documentedExample() throws {
        let template = try CPUTemplateFile.parse(documentedExampleJSON, source: "example.json")
        let leaf1 = try #require(template.cpuidModifiers.first)
        #expect(leaf1.leaf == 1 && leaf1.subleaf == 0 && leaf1.flags == 0)
        #expect(leaf1.registers.map(\.register) == [.eax])
        // The documentation's own reading: these bits are cleared, set and kept.
        #expect(leaf1.registers[0].bitmap.mask & ~leaf1.registers[0].bitmap.value == 0b0000_1111_1111_1100_0011_1001_0000_1101)
        #expect(leaf1.registers[0].bitmap.value == 0b0000_0000_0000_0011_0000_0110_1111_0010)
        #expect(leaf1.registers[0].bitmap.mask == ~UInt64(0b1111_0000_0000_0000_1100_0000_0000_0000) & 0xffff_ffff)
        #expect(template.msrModifiers == [MSRModifier(address: 0x10a, bitmap: RegisterBitmap(mask: .max, value: 0, width: 64))])
    }

    @Test("an empty object is a template that changes nothing")
    func empty() throws {
        #expect(try CPUTemplateFile.parse("{}", source: "t.json") == CPUTemplate())
    }

    @Test("leaf, subleaf and addr take hexadecimal or binary strings",
          arguments: [("\"0x1f\"", 0x1f), ("\"0x0001F\"", 0x1f),
                      ("\"0b101\"", 5), ("\"0xFFFFFFFF\"", 0xffff_ffff), ("\"0x80000008\"", 0x8000_0008)] as [(String, UInt32)])
    func numbers(text: String, value: UInt32) throws {
        let template = try CPUTemplateFile.parse(templateJSON([leafJSON(text, subleaf: text)]), source: "t.json")
        #expect(template.cpuidModifiers.first?.leaf == value)
        #expect(template.cpuidModifiers.first?.subleaf == value)
    }

    @Test("every error names the file, the JSON path and the problem", arguments: [
        // Not JSON at all, or not Firecracker's strict JSON.
        ("{\"cpuid_modifiers\": [}",
         "cpu template /t.json:1:22: cpuid_modifiers[0]: invalid JSON: expected a value, found \"}\""),
        ("{\n  \"msr_modifiers\": [],\n}",
         "cpu template /t.json:3:1: invalid JSON: expected a field name after \",\", found \"}\" (JSON allows no trailing comma)"),
        ("{\"cpuid_modifiers\": [] ",
         "cpu template /t.json:1:24: invalid JSON: expected \",\" or \"}\", found end of input"),
        ("", "cpu template /t.json:1:1: invalid JSON: expected a value, found end of input"),
        // Bitmaps.
        (templateJSON([leafJSON(modifiers: [("\"eax\"", "\"\(keepAll)\""), ("\"ebx\"", "\"0b\(String(repeating: "x", count: 31))\"")])]),
         "cpu template /t.json:1:181: cpuid_modifiers[0].modifiers[1].bitmap: expected \"0b\" and 32 characters of 0, 1 or x, found 31 characters"),
        (templateJSON([leafJSON(modifiers: [("\"eax\"", "\"0bxxxxxxxxxxxxxxxxxxxxxxxxxxxxx2xx\"")])]),
         "cpu template /t.json:1:112: cpuid_modifiers[0].modifiers[0].bitmap: expected \"0b\" and 32 characters of 0, 1 or x, found \"2\" at character 32"),
        ("{\"msr_modifiers\": [{\"addr\": \"0x10a\", \"bitmap\": \"\(keepAll)\"}]}",
         "cpu template /t.json:1:48: msr_modifiers[0].bitmap: expected \"0b\" and 64 characters of 0, 1 or x, found 32 characters"),
        // Registers.
        (templateJSON([leafJSON(), leafJSON("\"0x2\""), leafJSON("\"0x3\"", modifiers: [("\"exx\"", "\"\(keepAll)\"")])]),
         "cpu template /t.json:1:357: cpuid_modifiers[2].modifiers[0].register: \"exx\" is not one of eax, ebx, ecx, edx"),
        // Leaf, subleaf and address strings.
        (templateJSON([leafJSON("\"0X1\"")]),
         "cpu template /t.json:1:31: cpuid_modifiers[0].leaf: \"0X1\" has no 0x (hexadecimal) or 0b (binary) prefix"),
        (templateJSON([leafJSON("\"1\"")]),
         "cpu template /t.json:1:31: cpuid_modifiers[0].leaf: \"1\" has no 0x (hexadecimal) or 0b (binary) prefix"),
        (templateJSON([leafJSON(subleaf: "\"0xzz\"")]),
         "cpu template /t.json:1:49: cpuid_modifiers[0].subleaf: \"0xzz\" is not a hexadecimal number"),
        (templateJSON([leafJSON("\"0b102\"")]),
         "cpu template /t.json:1:31: cpuid_modifiers[0].leaf: \"0b102\" is not a binary number"),
        (templateJSON([leafJSON("\"0x100000000\"")]),
         "cpu template /t.json:1:31: cpuid_modifiers[0].leaf: \"0x100000000\" does not fit in 32 bits"),
        // Missing fields.
        ("{\"cpuid_modifiers\": [{\"leaf\": \"0x1\", \"flags\": 0, \"modifiers\": []}]}",
         "cpu template /t.json:1:22: cpuid_modifiers[0].subleaf: missing; each cpuid_modifiers entry needs leaf, subleaf, flags and modifiers"),
        ("{\"msr_modifiers\": [{\"addr\": \"0x10a\"}]}",
         "cpu template /t.json:1:20: msr_modifiers[0].bitmap: missing; each msr_modifiers entry needs addr and bitmap"),
        ("{\"cpuid_modifiers\": [{\"leaf\": \"0x1\", \"subleaf\": \"0x0\", \"flags\": 0, \"modifiers\": [{\"bitmap\": \"\(keepAll)\"}]}]}",
         "cpu template /t.json:1:82: cpuid_modifiers[0].modifiers[0].register: missing; each register modifier needs register and bitmap"),
        // Wrong types.
        (templateJSON([leafJSON(flags: "\"0\"")]),
         "cpu template /t.json:1:65: cpuid_modifiers[0].flags: expected an integer, found a string"),
        (templateJSON([leafJSON(flags: "4294967296")]),
         "cpu template /t.json:1:65: cpuid_modifiers[0].flags: expected an integer from 0 to 4294967295, found 4294967296"),
        (templateJSON([leafJSON("1")]),
         "cpu template /t.json:1:31: cpuid_modifiers[0].leaf: expected a string such as \"0x1\", found a number"),
        ("{\"cpuid_modifiers\": {}}", "cpu template /t.json:1:21: cpuid_modifiers: expected an array, found an object"),
        ("[]", "cpu template /t.json:1:1: expected an object, found an array"),
        (templateJSON([leafJSON(modifiers: [("\"eax\"", "null")])]),
         "cpu template /t.json:1:112: cpuid_modifiers[0].modifiers[0].bitmap: expected a string, found null"),
        // Fields Firecracker does not accept in an x86_64 template.
        ("{\"reg_modifiers\": []}",
         "cpu template /t.json:1:19: reg_modifiers: unknown field (it belongs to aarch64 templates); an x86_64 template has kvm_capabilities, cpuid_modifiers and msr_modifiers"),
        ("{\"cpuid_modifier\": []}",
         "cpu template /t.json:1:20: cpuid_modifier: unknown field; an x86_64 template has kvm_capabilities, cpuid_modifiers and msr_modifiers"),
        ("{\"kvm_capabilities\": [\"56\", \"!x\"]}",
         "cpu template /t.json:1:29: kvm_capabilities[1]: \"!x\" is not a KVM capability number, optionally preceded by !"),
    ])
    func errors(json: String, message: String) {
        #expect {
            _ = try CPUTemplateFile.parse(json, source: "/t.json")
        } throws: { error in
            "\(error)" == message
        }
    }

    @Test("an MSR named twice is refused, however its address is written", arguments: ["\"0x10\"", "\"0b10000\"", "\"0x0010\""])
    func duplicateMSR(second: String) {
        let json = msrTemplateJSON(["\"0x10\"", "\"0x11\"", second])
        #expect(parseError(json)?.description == """
            cpu template /t.json:1:\(column(ofLast: second, in: json)): msr_modifiers[2].addr: \
            MSR 0x10 is already modified by msr_modifiers[0]; name each MSR once
            """)
    }

    @Test("a CPUID leaf and subleaf named twice is refused; the same leaf with another subleaf is not")
    func duplicateLeaf() throws {
        let json = templateJSON([leafJSON(), leafJSON("\"0x7\""), leafJSON("\"0b1\"", subleaf: "\"0x00\"")])
        #expect(parseError(json)?.description == """
            cpu template /t.json:1:\(column(ofLast: "{\"leaf\"", in: json)): cpuid_modifiers[2]: \
            leaf 0x1 subleaf 0x0 is already modified by cpuid_modifiers[0]; merge the two entries into one
            """)
        let template = try CPUTemplateFile.parse(templateJSON([leafJSON(), leafJSON(subleaf: "\"0x1\"")]), source: "/t.json")
        #expect(template.cpuidModifiers.map(\.subleaf) == [0, 1])
    }

    @Test("a register named twice in one entry is refused")
    func duplicateRegister() {
        let json = templateJSON([leafJSON(modifiers: [("\"eax\"", "\"\(keepAll)\""), ("\"ebx\"", "\"\(keepAll)\""), ("\"eax\"", "\"\(keepAll)\"")])])
        #expect(parseError(json)?.description == """
            cpu template /t.json:1:\(column(ofLast: "\"eax\"", in: json)): cpuid_modifiers[0].modifiers[2].register: \
            eax is already modified by modifiers[0] of this entry; give each register one bitmap
            """)
    }

    @Test("more MSRs than KVM takes in one call are refused at the list")
    func msrLimit() throws {
        let addresses = (0..<256).map { "\"0x\(String($0, radix: 16))\"" }
        let atLimit = try CPUTemplateFile.parse(msrTemplateJSON(Array(addresses.prefix(255))), source: "/t.json")
        #expect(atLimit.msrModifiers.count == CPUTemplate.maximumMSRCount)
        #expect(parseError(msrTemplateJSON(addresses))?.description == """
            cpu template /t.json:1:19: msr_modifiers: 256 entries; KVM reads and writes at most 255 MSRs in one call, \
            so a template may modify at most that many
            """)
    }

    @Test("a number out of range or not an integer names its own field", arguments: ["4294967296", "-1", "1e3", "99999999999999999999999", "0.5"])
    func outOfRange(flags: String) {
        let json = templateJSON([leafJSON(), leafJSON("\"0x2\"", flags: flags)])
        #expect(parseError(json)?.description == """
            cpu template /t.json:1:\(column(ofLast: flags, in: json)): cpuid_modifiers[1].flags: \
            expected an integer from 0 to 4294967295, found \(flags)
            """)
    }

    @Test("invalid UTF-8 is reported at its line and column")
    func invalidUTF8() throws {
        let json = "{\n  \"cpuid_modifiers\": [\n" + leafJSON(modifiers: [("\"e\u{7f}x\"", "\"\(keepAll)\"")]) + "]}"
        let bytes = Array(json.utf8).map { $0 == 0x7f ? 0xff : $0 }
        let error = try #require(parseError(bytes))
        #expect(error.line == 3 && error.column == column(ofLast: "\u{7f}", in: leafJSON(modifiers: [("\"e\u{7f}x\"", "\"\(keepAll)\"")])))
        #expect(error.path == "cpuid_modifiers[0].modifiers[0].register")
        #expect(error.problem == "invalid JSON: invalid UTF-8: byte 0xff never occurs in UTF-8")
    }

    @Test("a repeated JSON key and a null list are refused", arguments: [
        ("{\"msr_modifiers\": [],\n \"msr_modifiers\": []}",
         "cpu template /t.json:2:2: msr_modifiers: duplicate field \"msr_modifiers\"; it first appears at line 1, column 2"),
        (templateJSON(["{\"leaf\": \"0x1\", \"leaf\": \"0x2\"}"]),
         "cpu template /t.json:1:38: cpuid_modifiers[0].leaf: duplicate field \"leaf\"; it first appears at line 1, column 23"),
        ("{\"cpuid_modifiers\": null}", "cpu template /t.json:1:21: cpuid_modifiers: expected an array, found null"),
    ])
    func strictJSON(json: String, message: String) {
        #expect(parseError(json)?.description == message)
    }

    @Test("an error made without a position reads as before")
    func errorWithoutPosition() {
        #expect(CPUTemplateError(source: "t.json", path: "msr_modifiers", problem: "p").description == "cpu template t.json: msr_modifiers: p")
        #expect(CPUTemplateError(source: "t.json", path: "", problem: "p").description == "cpu template t.json: p")
    }

    @Test("thousands of mutated templates never crash; each parses or fails with a position")
    func mutations() {
        var random = JSONFuzzRandom(seed: 0xc0ffee)
        let original = Array(documentedExampleJSON.utf8)
        let interesting = Array("{}[],:\"\\0bx1-e. ".utf8) + [0x00, 0x0a, 0x7f, 0x80, 0xc3, 0xe2, 0xff]
        func below(_ bound: Int) -> Int { bound <= 0 ? 0 : Int(random.next() % UInt64(bound)) }
        var parsed = 0
        var refused = 0
        for _ in 0..<4000 {
            var bytes = original
            for _ in 0...below(3) {
                let at = below(bytes.count)
                switch below(6) {
                case 0 where !bytes.isEmpty: bytes[at] ^= 1 << UInt8(below(8))
                case 1 where !bytes.isEmpty: bytes[at] = interesting[below(interesting.count)]
                case 2: bytes.removeLast(below(bytes.count))
                case 3: bytes.insert(interesting[below(interesting.count)], at: at)
                case 4 where !bytes.isEmpty: bytes.remove(at: at)
                default:
                    let end = at + below(min(40, bytes.count - at))
                    bytes.insert(contentsOf: bytes[at..<end], at: below(bytes.count))
                }
            }
            if let error = parseError(bytes) {
                #expect(error.line >= 1 && error.column >= 1 && !error.problem.isEmpty, "\(error)")
                refused += 1
            } else {
                parsed += 1
            }
        }
        #expect(parsed > 0 && refused > 0)
    }

    @Test("the no-cx16-no-xsave template hides CMPXCHG16B, XSAVE and what needs it")
    func noCX16NoXSAVE() throws {
        let path = URL(filePath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appending(path: "GuestConfigs/cpu-templates/no-cx16-no-xsave.json")
        let template = try CPUTemplateFile.parse([UInt8](try Data(contentsOf: path)), source: path.path)

        // A host that offers everything.
        let indexed = CPUIDEntry.significantIndexFlag
        let host = [
            CPUIDEntry(function: 0x1, eax: .max, ebx: .max, ecx: .max, edx: .max),
            CPUIDEntry(function: 0x7, index: 0, flags: indexed, eax: .max, ebx: .max, ecx: .max, edx: .max),
            CPUIDEntry(function: 0x7, index: 1, flags: indexed, eax: .max, ebx: .max, ecx: .max, edx: .max),
            CPUIDEntry(function: 0xD, index: 0, flags: indexed, eax: .max, ebx: .max, ecx: .max, edx: .max),
            CPUIDEntry(function: 0x8000_0001, eax: .max, ebx: .max, ecx: .max, edx: .max),
        ]
        let guest = try template.apply(to: host)
        let leaf1 = try #require(guest.first { $0.function == 0x1 })
        // CMPXCHG16B 13, XSAVE 26, OSXSAVE 27, and AVX 28 with its VEX-encoded
        // companions FMA 12 and F16C 29, which need the YMM state XSAVE manages.
        for bit in [12, 13, 26, 27, 28, 29] { #expect(!leaf1.bit(bit, of: .ecx), "CPUID.1:ECX[\(bit)]") }
        #expect(leaf1.ecx | (0b11_1100_0000_0000_0011_0000_0000_0000) == .max, "nothing else in ECX")
        #expect(leaf1.edx == .max && leaf1.ebx == .max)

        let leaf7 = try #require(guest.first { $0.function == 0x7 && $0.index == 0 })
        // AVX2, MPX, AVX-512 family; PKU and CET shadow stack/IBT (XSAVE-managed state); AMX.
        for bit in [5, 14, 16, 17, 21, 26, 27, 28, 30, 31] { #expect(!leaf7.bit(bit, of: .ebx), "CPUID.7.0:EBX[\(bit)]") }
        for bit in [1, 3, 6, 7, 9, 10, 11, 12, 14] { #expect(!leaf7.bit(bit, of: .ecx), "CPUID.7.0:ECX[\(bit)]") }
        for bit in [2, 3, 8, 20, 22, 23, 24, 25] { #expect(!leaf7.bit(bit, of: .edx), "CPUID.7.0:EDX[\(bit)]") }
        // Unrelated leaf 7 features stay: FSGSBASE, BMI1, ERMS, SHA, GFNI.
        #expect(leaf7.bit(0, of: .ebx) && leaf7.bit(3, of: .ebx) && leaf7.bit(9, of: .ebx) && leaf7.bit(29, of: .ebx))
        #expect(leaf7.bit(8, of: .ecx))

        let extended = try #require(guest.first { $0.function == 0x8000_0001 })
        #expect(!extended.bit(11, of: .ecx) && !extended.bit(16, of: .ecx), "AMD XOP and FMA4")

        // Leaves the template leaves alone.
        #expect(guest[2] == host[2] && guest[3] == host[3])
    }
}
