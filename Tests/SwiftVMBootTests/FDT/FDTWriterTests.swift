import Testing
@testable import SwiftVMBoot
import SwiftVMTestSupport

/// Big-endian bytes of `value`, for golden comparisons.
func be<T: FixedWidthInteger>(_ value: T) -> [UInt8] {
    withUnsafeBytes(of: value.bigEndian) { Array($0) }
}

@Suite("FDTWriter")
struct FDTWriterTests {
    /// The smallest interesting tree; `dtc -I dtb -O dts` prints it as
    ///
    ///     /dts-v1/;
    ///
    ///     / {
    ///         compatible = "x";
    ///
    ///         n {
    ///             compatible = "y";
    ///             v = <0x12345678>;
    ///         };
    ///     };
    func tinyTree() throws -> [UInt8] {
        var fdt = FDTWriter()
        try fdt.beginNode("")
        try fdt.property("compatible", string: "x")
        try fdt.beginNode("n")
        try fdt.property("compatible", string: "y")
        try fdt.property("v", u32: 0x1234_5678)
        try fdt.endNode()
        try fdt.endNode()
        return try fdt.finish()
    }

    @Test("a tiny tree matches its golden bytes: header, empty reservation block, tokens, strings")
    func golden() throws {
        let header: [UInt8] =
            be(UInt32(0xd00d_feed))  // magic
            + be(UInt32(145))  // totalsize
            + be(UInt32(56))  // off_dt_struct: after the header and the 16-byte reservation terminator
            + be(UInt32(132))  // off_dt_strings: 56 + size_dt_struct
            + be(UInt32(40))  // off_mem_rsvmap: right after the header
            + be(UInt32(17))  // version
            + be(UInt32(16))  // last_comp_version
            + be(UInt32(0))  // boot_cpuid_phys
            + be(UInt32(13))  // size_dt_strings: "compatible\0v\0"
            + be(UInt32(76))  // size_dt_struct
        let reservations = [UInt8](repeating: 0, count: 16)
        let structure: [UInt8] =
            be(UInt32(1)) + [0, 0, 0, 0]  // FDT_BEGIN_NODE "" (root)
            + be(UInt32(3)) + be(UInt32(2)) + be(UInt32(0)) + [0x78, 0, 0, 0]  // FDT_PROP compatible = "x", padded
            + be(UInt32(1)) + [0x6e, 0, 0, 0]  // FDT_BEGIN_NODE "n"
            + be(UInt32(3)) + be(UInt32(2)) + be(UInt32(0)) + [0x79, 0, 0, 0]  // compatible = "y": same name offset
            + be(UInt32(3)) + be(UInt32(4)) + be(UInt32(11)) + be(UInt32(0x1234_5678))  // v = <0x12345678>
            + be(UInt32(2)) + be(UInt32(2))  // FDT_END_NODE twice
            + be(UInt32(9))  // FDT_END
        let strings = Array("compatible\0v\0".utf8)
        #expect(try tinyTree() == header + reservations + structure + strings)
    }

    @Test("dtc decodes the tiny tree without complaint", .enabled(if: DTC.isAvailable, DTC.missingReason))
    func dtcAgrees() throws {
        let result = try DTC.decompile(try tinyTree())
        #expect(result.status == 0)
        #expect(result.diagnostics.isEmpty, "dtc said: \(result.diagnostics)")
        #expect(result.source.contains("compatible = \"x\";"))
        #expect(result.source.contains("v = <0x12345678>;"))
    }

    @Test("each property name is stored once in the strings block")
    func deduplicatesStrings() throws {
        var fdt = FDTWriter()
        try fdt.beginNode("")
        try fdt.property("reg", u64Array: [1, 2])
        for index in 0..<5 {
            try fdt.beginNode("dev@\(index)")
            try fdt.property("reg", u64Array: [UInt64(index), 0x1000])
            try fdt.property("status", string: "okay")
            try fdt.endNode()
        }
        try fdt.endNode()
        let blob = try fdt.finish()
        let stringsSize = Int(UInt32(blob[32]) << 24 | UInt32(blob[33]) << 16 | UInt32(blob[34]) << 8 | UInt32(blob[35]))
        #expect(stringsSize == "reg\0status\0".utf8.count)
        #expect(Array(blob.suffix(stringsSize)) == Array("reg\0status\0".utf8))
    }

    @Test(
        "values and names are padded so every token starts on a 4-byte boundary",
        arguments: [0, 1, 2, 3, 4, 5, 7, 8])
    func alignment(length: Int) throws {
        var fdt = FDTWriter()
        try fdt.beginNode("")
        try fdt.property("p", bytes: [UInt8](repeating: 0xab, count: length))
        try fdt.beginNode(String(repeating: "a", count: max(1, length)))
        try fdt.endNode()
        try fdt.endNode()
        let blob = try fdt.finish()
        let structureSize = 8 + (12 + (length + 3) / 4 * 4) + (4 + (max(1, length) + 1 + 3) / 4 * 4) + 4 + 4 + 4
        #expect(Array(blob[36..<40]) == be(UInt32(structureSize)))
        #expect(structureSize % 4 == 0)
        // The token after the value (FDT_BEGIN_NODE) sits right after the padding.
        let next = 56 + 8 + 12 + (length + 3) / 4 * 4
        #expect(Array(blob[next..<next + 4]) == be(UInt32(1)))
        #expect(blob[(next - ((length + 3) / 4 * 4 - length))..<next].allSatisfy { $0 == 0 })
    }

    @Test("u64 and string-list encodings")
    func encodings() throws {
        var fdt = FDTWriter()
        try fdt.beginNode("")
        try fdt.property("a", u64: 0x0102_0304_0506_0708)
        try fdt.property("b", strings: ["ab", "", "c"])
        try fdt.property("c")
        try fdt.endNode()
        let blob = try fdt.finish()
        // a: 8 bytes, high cell first.
        #expect(Array(blob[64 + 12..<64 + 20]) == [1, 2, 3, 4, 5, 6, 7, 8])
        // b: "ab\0\0c\0" (6 bytes) padded to 8.
        #expect(Array(blob[64 + 20..<64 + 32]) == be(UInt32(3)) + be(UInt32(6)) + be(UInt32(2)))
        #expect(Array(blob[64 + 32..<64 + 40]) == [0x61, 0x62, 0, 0, 0x63, 0, 0, 0])
        // c: an empty property is a PROP token with length 0 and no value.
        #expect(Array(blob[64 + 40..<64 + 52]) == be(UInt32(3)) + be(UInt32(0)) + be(UInt32(4)))
    }

    @Test("phandles count up from 1")
    func phandles() {
        var fdt = FDTWriter()
        #expect(fdt.allocatePhandle() == 1)
        #expect(fdt.allocatePhandle() == 2)
        #expect(fdt.allocatePhandle() == 3)
    }

    @Test("boot_cpuid_phys is written")
    func bootCPU() throws {
        var fdt = FDTWriter()
        fdt.bootCPUID = 3
        try fdt.beginNode("")
        try fdt.endNode()
        #expect(Array(try fdt.finish()[28..<32]) == be(UInt32(3)))
    }

    // MARK: misuse

    @Test("a property outside any node")
    func propertyOutsideNode() {
        var fdt = FDTWriter()
        #expect(throws: FDTError.propertyOutsideNode("compatible")) { try fdt.property("compatible", string: "x") }
    }

    @Test("endNode without beginNode")
    func unbalanced() throws {
        var fdt = FDTWriter()
        #expect(throws: FDTError.unbalancedEndNode) { try fdt.endNode() }
        try fdt.beginNode("")
        try fdt.endNode()
        #expect(throws: FDTError.unbalancedEndNode) { try fdt.endNode() }
    }

    @Test("finish with nodes still open names the innermost")
    func finishOpen() throws {
        var fdt = FDTWriter()
        try fdt.beginNode("")
        try fdt.beginNode("cpus")
        try fdt.beginNode("cpu@0")
        let error = #expect(throws: FDTError.self) { try fdt.finish() }
        #expect(error == .unclosedNodes(count: 3, path: "/cpus/cpu@0"))
        #expect(error?.description.contains("/cpus/cpu@0") == true)
    }

    @Test("finish without a root")
    func finishEmpty() {
        #expect(throws: FDTError.missingRoot) { try FDTWriter().finish() }
    }

    @Test("the first node must be the root, and there is only one")
    func rootRules() throws {
        var fdt = FDTWriter()
        #expect(throws: FDTError.nodeOutsideRoot("cpus")) { try fdt.beginNode("cpus") }
        try fdt.beginNode("")
        try fdt.endNode()
        #expect(throws: FDTError.nodeOutsideRoot("")) { try fdt.beginNode("") }
    }

    @Test(
        "node names the specification does not allow",
        arguments: ["", "1cpu", "cpu@", "has space", "slash/name", "a@b@c", String(repeating: "n", count: 32), "tab\t", "é"])
    func badNodeNames(name: String) throws {
        var fdt = FDTWriter()
        try fdt.beginNode("")
        #expect(throws: FDTError.invalidNodeName(name)) { try fdt.beginNode(name) }
    }

    @Test("node names it allows", arguments: ["cpus", "cpu@0", "virtio_mmio@40003000", "apb-pclk", "a,b.c+d", String(repeating: "n", count: 31)])
    func goodNodeNames(name: String) throws {
        var fdt = FDTWriter()
        try fdt.beginNode("")
        try fdt.beginNode(name)
    }

    @Test("property names the specification does not allow", arguments: ["", "with space", "a/b", "a@b", String(repeating: "p", count: 32)])
    func badPropertyNames(name: String) throws {
        var fdt = FDTWriter()
        try fdt.beginNode("")
        #expect(throws: FDTError.invalidPropertyName(name)) { try fdt.property(name, u32: 0) }
    }

    @Test("property names it allows", arguments: ["#address-cells", "linux,initrd-start", "a?", "reg"])
    func goodPropertyNames(name: String) throws {
        var fdt = FDTWriter()
        try fdt.beginNode("")
        try fdt.property(name, u32: 0)
    }

    @Test("a property after a subnode of the same node")
    func propertyAfterSubnode() throws {
        var fdt = FDTWriter()
        try fdt.beginNode("")
        try fdt.beginNode("cpus")
        try fdt.endNode()
        #expect(throws: FDTError.propertyAfterSubnode(property: "model", node: "/")) { try fdt.property("model", string: "m") }
    }

    @Test("the same property twice in one node")
    func duplicate() throws {
        var fdt = FDTWriter()
        try fdt.beginNode("")
        try fdt.beginNode("chosen")
        try fdt.property("bootargs", string: "a")
        #expect(throws: FDTError.duplicateProperty(property: "bootargs", node: "/chosen")) { try fdt.property("bootargs", string: "b") }
    }

    @Test("a string with a NUL in it")
    func nulInString() throws {
        var fdt = FDTWriter()
        try fdt.beginNode("")
        #expect(throws: FDTError.stringContainsNUL(property: "bootargs")) { try fdt.property("bootargs", string: "console=ttyS0\0init=/x") }
    }
}
