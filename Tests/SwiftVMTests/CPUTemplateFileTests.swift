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

@Suite("CPU template files")
struct CPUTemplateFileTests {
    @Test("Firecracker's documented example reads as written")
    func documentedExample() throws {
        let json = """
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
        let template = try CPUTemplateFile.parse(json, source: "example.json")
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
         "cpu template /t.json: invalid JSON at line 1, column 22 (byte offset 21): expected a value, found \"}\""),
        ("{\n  \"msr_modifiers\": [],\n}",
         "cpu template /t.json: invalid JSON at line 3, column 1 (byte offset 25): expected a field name in double quotes, found \"}\""),
        ("{\"cpuid_modifiers\": [] ",
         "cpu template /t.json: invalid JSON at line 1, column 24 (byte offset 23): expected \",\" or \"}\", found end of file"),
        ("", "cpu template /t.json: invalid JSON at line 1, column 1 (byte offset 0): expected a value, found end of file"),
        // Bitmaps.
        (templateJSON([leafJSON(modifiers: [("\"eax\"", "\"\(keepAll)\""), ("\"ebx\"", "\"0b\(String(repeating: "x", count: 31))\"")])]),
         "cpu template /t.json: cpuid_modifiers[0].modifiers[1].bitmap: expected \"0b\" and 32 characters of 0, 1 or x, found 31 characters"),
        (templateJSON([leafJSON(modifiers: [("\"eax\"", "\"0bxxxxxxxxxxxxxxxxxxxxxxxxxxxxx2xx\"")])]),
         "cpu template /t.json: cpuid_modifiers[0].modifiers[0].bitmap: expected \"0b\" and 32 characters of 0, 1 or x, found \"2\" at character 32"),
        ("{\"msr_modifiers\": [{\"addr\": \"0x10a\", \"bitmap\": \"\(keepAll)\"}]}",
         "cpu template /t.json: msr_modifiers[0].bitmap: expected \"0b\" and 64 characters of 0, 1 or x, found 32 characters"),
        // Registers.
        (templateJSON([leafJSON(), leafJSON(), leafJSON(modifiers: [("\"exx\"", "\"\(keepAll)\"")])]),
         "cpu template /t.json: cpuid_modifiers[2].modifiers[0].register: \"exx\" is not one of eax, ebx, ecx, edx"),
        // Leaf, subleaf and address strings.
        (templateJSON([leafJSON("\"0X1\"")]),
         "cpu template /t.json: cpuid_modifiers[0].leaf: \"0X1\" has no 0x (hexadecimal) or 0b (binary) prefix"),
        (templateJSON([leafJSON("\"1\"")]),
         "cpu template /t.json: cpuid_modifiers[0].leaf: \"1\" has no 0x (hexadecimal) or 0b (binary) prefix"),
        (templateJSON([leafJSON(subleaf: "\"0xzz\"")]),
         "cpu template /t.json: cpuid_modifiers[0].subleaf: \"0xzz\" is not a hexadecimal number"),
        (templateJSON([leafJSON("\"0b102\"")]),
         "cpu template /t.json: cpuid_modifiers[0].leaf: \"0b102\" is not a binary number"),
        (templateJSON([leafJSON("\"0x100000000\"")]),
         "cpu template /t.json: cpuid_modifiers[0].leaf: \"0x100000000\" does not fit in 32 bits"),
        // Missing fields.
        ("{\"cpuid_modifiers\": [{\"leaf\": \"0x1\", \"flags\": 0, \"modifiers\": []}]}",
         "cpu template /t.json: cpuid_modifiers[0].subleaf: missing; each cpuid_modifiers entry needs leaf, subleaf, flags and modifiers"),
        ("{\"msr_modifiers\": [{\"addr\": \"0x10a\"}]}",
         "cpu template /t.json: msr_modifiers[0].bitmap: missing; each msr_modifiers entry needs addr and bitmap"),
        ("{\"cpuid_modifiers\": [{\"leaf\": \"0x1\", \"subleaf\": \"0x0\", \"flags\": 0, \"modifiers\": [{\"bitmap\": \"\(keepAll)\"}]}]}",
         "cpu template /t.json: cpuid_modifiers[0].modifiers[0].register: missing; each register modifier needs register and bitmap"),
        // Wrong types.
        (templateJSON([leafJSON(flags: "\"0\"")]),
         "cpu template /t.json: cpuid_modifiers[0].flags: expected an integer, found a string"),
        (templateJSON([leafJSON(flags: "4294967296")]),
         "cpu template /t.json: cpuid_modifiers[0].flags: 4294967296 does not fit in 32 bits"),
        (templateJSON([leafJSON("1")]),
         "cpu template /t.json: cpuid_modifiers[0].leaf: expected a string such as \"0x1\", found a number"),
        ("{\"cpuid_modifiers\": {}}", "cpu template /t.json: cpuid_modifiers: expected an array, found an object"),
        ("[]", "cpu template /t.json: expected an object, found an array"),
        (templateJSON([leafJSON(modifiers: [("\"eax\"", "null")])]),
         "cpu template /t.json: cpuid_modifiers[0].modifiers[0].bitmap: expected a string, found null"),
        // Fields Firecracker does not accept in an x86_64 template.
        ("{\"reg_modifiers\": []}",
         "cpu template /t.json: reg_modifiers: unknown field (it belongs to aarch64 templates); an x86_64 template has kvm_capabilities, cpuid_modifiers and msr_modifiers"),
        ("{\"cpuid_modifier\": []}",
         "cpu template /t.json: cpuid_modifier: unknown field; an x86_64 template has kvm_capabilities, cpuid_modifiers and msr_modifiers"),
        ("{\"kvm_capabilities\": [\"56\", \"!x\"]}",
         "cpu template /t.json: kvm_capabilities[1]: \"!x\" is not a KVM capability number, optionally preceded by !"),
    ])
    func errors(json: String, message: String) {
        #expect {
            _ = try CPUTemplateFile.parse(json, source: "/t.json")
        } throws: { error in
            "\(error)" == message
        }
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
