import Testing
import SwiftVMBoot
import SwiftVMTestSupport

private let indexed = CPUIDEntry.significantIndexFlag

private func bitmap(_ text: String) throws -> RegisterBitmap {
    try RegisterBitmap(parsing: text, width: 32)
}

/// Clears bit 0 and sets bit 1 of the register it is applied to.
private func clear0set1() throws -> RegisterBitmap {
    try bitmap("0b" + String(repeating: "x", count: 30) + "10")
}

@Suite("CPU template application")
struct CPUTemplateTests {
    let host = [
        CPUIDEntry(function: 0x1, eax: 0x1, ecx: 0xffff_ffff),
        CPUIDEntry(function: 0x7, index: 0, flags: indexed, ebx: 0x1),
        CPUIDEntry(function: 0x7, index: 1, flags: indexed, ebx: 0x1),
    ]

    @Test("an indexed leaf is matched on its subleaf; the other subleaves are untouched")
    func indexedMatch() throws {
        let template = CPUTemplate(cpuidModifiers: [
            CPUIDModifier(leaf: 0x7, subleaf: 1, flags: indexed, registers: [(.ebx, try clear0set1())]),
        ])
        let result = try template.apply(to: host)
        #expect(result[1] == host[1])
        #expect(result[2].ebx == 0x2)
    }

    @Test("a leaf without significant index matches whatever subleaf the template names")
    func unindexedMatch() throws {
        let template = CPUTemplate(cpuidModifiers: [
            CPUIDModifier(leaf: 0x1, subleaf: 3, registers: [(.eax, try clear0set1()), (.ecx, try clear0set1())]),
        ])
        let result = try template.apply(to: host)
        #expect(result[0].eax == 0x2)
        #expect(result[0].ecx == 0xffff_fffe)
        #expect(Array(result[1...]) == Array(host[1...]))
    }

    @Test("the template's flags replace the entry's")
    func flagsReplaced() throws {
        let template = CPUTemplate(cpuidModifiers: [CPUIDModifier(leaf: 0x1, flags: indexed, registers: [])])
        #expect(try template.apply(to: host)[0].flags == indexed)
    }

    @Test("patterns for one register apply in order")
    func sameRegisterTwice() throws {
        let template = CPUTemplate(cpuidModifiers: [
            CPUIDModifier(leaf: 0x1, registers: [(.eax, try clear0set1()), (.eax, try bitmap("0b1" + String(repeating: "x", count: 31)))]),
        ])
        #expect(try template.apply(to: host)[0].eax == 0x8000_0002)
    }

    @Test("a leaf or indexed subleaf the host lacks is refused", arguments: [(0x8000_0008, 0), (0x7, 2)] as [(UInt32, UInt32)])
    func missingLeaf(leaf: UInt32, subleaf: UInt32) throws {
        let template = CPUTemplate(cpuidModifiers: [
            CPUIDModifier(leaf: leaf, subleaf: subleaf, flags: indexed, registers: [(.eax, try clear0set1())]),
        ])
        #expect(throws: CPUTemplateApplyError.cpuidLeafNotOffered(leaf: leaf, subleaf: subleaf)) {
            try template.apply(to: host)
        }
    }

    @Test("MSR patterns apply to the values read from KVM; a missing MSR is refused")
    func msrs() throws {
        let clearLow = try RegisterBitmap(parsing: "0b" + String(repeating: "x", count: 56) + "00000000", width: 64)
        let template = CPUTemplate(msrModifiers: [MSRModifier(address: 0x10a, bitmap: clearLow)])
        #expect(template.msrAddresses == [0x10a])
        #expect(try template.applyMSRs(to: [0x10a: 0x1234, 0x1a0: 7]) == [0x10a: 0x1200, 0x1a0: 7])
        #expect(throws: CPUTemplateApplyError.msrNotOffered(address: 0x10a)) {
            try template.applyMSRs(to: [0x1a0: 7])
        }
        #expect("\(CPUTemplateApplyError.msrNotOffered(address: 0x10a))".contains("MSR 0x10a"))
    }

    @Test("an MSR named twice is read back once and gets both patterns in order")
    func repeatedMSR() throws {
        let setLow = try RegisterBitmap(parsing: "0b" + String(repeating: "x", count: 63) + "1", width: 64)
        let clearBit4 = try RegisterBitmap(parsing: "0b" + String(repeating: "x", count: 59) + "0xxxx", width: 64)
        let template = CPUTemplate(msrModifiers: [
            MSRModifier(address: 0x10, bitmap: setLow), MSRModifier(address: 0x11, bitmap: setLow),
            MSRModifier(address: 0x10, bitmap: clearBit4),
        ])
        #expect(template.msrAddresses == [0x10, 0x11])
        // What the VMM does with the values it reads back: one per address, so no key repeats.
        let read = Dictionary(uniqueKeysWithValues: zip(template.msrAddresses, [0xf0, 0xf0] as [UInt64]))
        #expect(try template.applyMSRs(to: read) == [0x10: 0xe1, 0x11: 0xf1])
    }

    @Test("a CPUID leaf named twice gets both modifiers in order and the last one's flags")
    func repeatedLeaf() throws {
        let template = CPUTemplate(cpuidModifiers: [
            CPUIDModifier(leaf: 0x1, flags: 0, registers: [(.eax, try clear0set1())]),
            CPUIDModifier(leaf: 0x1, flags: indexed, registers: [(.eax, try bitmap("0b1" + String(repeating: "x", count: 31)))]),
        ])
        let result = try template.apply(to: host)
        #expect(result[0].eax == 0x8000_0002)
        #expect(result[0].flags == indexed)
    }

    @Test("the MSR limit is what KVM_GET_MSRS and KVM_SET_MSRS take in one call")
    func msrLimit() {
        #expect(CPUTemplate.maximumMSRCount == 255)
    }
}
