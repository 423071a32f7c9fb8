import Testing
import SwiftVMMemory
@testable import SwiftVMInspect
import SwiftVMTestSupport

@Suite("KernelInspection")
struct KernelInspectionTests {
    static func fact(_ inspection: KernelInspection, _ label: String) -> String? {
        inspection.facts.first { $0.label == label }?.value
    }

    @Test("an x86_64 ELF: entry, PT_LOAD range, banner; usable on x86_64 only")
    func elf() {
        var elf = SyntheticELF()
        elf.segments[1].contents = Array("..Linux version %s..Linux version 6.1.99 (x@y) #1 SMP\n".utf8)
        elf.segments[1].memorySize = UInt64(elf.segments[1].contents.count)
        let inspection = KernelInspection.inspect(elf.image)
        #expect(Self.fact(inspection, "entry point") == "0x1000000")
        #expect(Self.fact(inspection, "PT_LOAD") == "2 segments, physical [0x1000000, 0x1100036)")
        #expect(inspection.version == "Linux version 6.1.99 (x@y) #1 SMP")
        #expect(inspection.problems[.x86_64] == nil)
        #expect(inspection.problems[.aarch64]?.contains("Image") == true)
        #expect(inspection.embeddedConfig == nil && inspection.embeddedConfigError == nil)
    }

    @Test("an ELF whose segment sits below 1 MiB is not usable, with the loader's reason")
    func lowSegment() {
        var elf = SyntheticELF()
        elf.segments[0].physicalAddress = 0x1000
        elf.entry = 0x1000
        #expect(KernelInspection.inspect(elf.image).problems[.x86_64]?.contains("below 1 MiB") == true)
    }

    @Test("a bzImage: protocol, 64-bit entry, relocatable, version from the setup header")
    func bzImage() {
        var bytes = syntheticBzImage(version: 0x020f) + [UInt8](repeating: 0, count: 0x1000)
        bytes[0x1f1] = 1  // one setup sector: the payload follows at 0x400 + payload_offset
        bytes.replaceSubrange(0x20e..<0x210, with: le(UInt16(0x100)))  // string at 0x300
        bytes.replaceSubrange(0x300..<0x310, with: Array("6.1.0-test (me)\u{0}".utf8))
        bytes[0x234] = 1
        bytes.replaceSubrange(0x236..<0x238, with: le(UInt16(3)))
        bytes.replaceSubrange(0x248..<0x250, with: le(UInt32(0x10)) + le(UInt32(1234)))
        bytes.replaceSubrange(0x410..<0x416, with: [0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00])
        let inspection = KernelInspection.inspect(InMemoryImage(bytes))
        #expect(Self.fact(inspection, "boot protocol") == "2.15")
        #expect(Self.fact(inspection, "64-bit entry") == "yes")
        #expect(Self.fact(inspection, "relocatable") == "yes")
        #expect(Self.fact(inspection, "payload") == "1234 bytes, xz-compressed")
        #expect(inspection.version == "6.1.0-test (me)")
        // Protocol 2.15 with XLF_KERNEL_64: swiftvm boots it at load address + 0x200.
        #expect(inspection.problems[.x86_64] == nil)
        #expect(Self.fact(inspection, "x86_64 entry")?.hasPrefix("the Linux 64-bit entry at 0x100200") == true)
        #expect(inspection.problems[.aarch64] != nil)

        // Without XLF_KERNEL_64 it is refused, naming the flag and the fix.
        bytes.replaceSubrange(0x236..<0x238, with: le(UInt16(2)))
        let refused = KernelInspection.inspect(InMemoryImage(bytes))
        #expect(refused.problems[.x86_64]?.contains("XLF_KERNEL_64") == true)
        #expect(refused.problems[.x86_64]?.contains("vmlinux") == true)
    }

    @Test("an arm64 Image: text offset, size, page size; usable on aarch64 only unless 64K pages")
    func arm64() {
        var bytes = syntheticArm64Image()
        bytes.replaceSubrange(0x10..<0x18, with: le(UInt64(0x200_0000)))
        bytes.replaceSubrange(0x18..<0x20, with: le(UInt64(0b1010)))  // 4K pages, place anywhere
        let inspection = KernelInspection.inspect(InMemoryImage(bytes))
        #expect(Self.fact(inspection, "text offset") == "0x0")
        #expect(Self.fact(inspection, "page size") == "4 KiB")
        #expect(Self.fact(inspection, "EFI stub") == "yes (PE/COFF header)")
        #expect(inspection.problems[.aarch64] == nil)
        #expect(inspection.problems[.x86_64]?.contains("arm64") == true)

        bytes.replaceSubrange(0x18..<0x20, with: le(UInt64(0b0110)))  // 64K pages
        #expect(KernelInspection.inspect(InMemoryImage(bytes)).problems[.aarch64]?.contains("64 KiB") == true)
    }

    @Test("an embedded config between IKCFG_ST and IKCFG_ED is found and decompressed")
    func embedded() throws {
        let config = "CONFIG_VIRTIO_BLK=m\n# CONFIG_MODULES is not set\n"
        var bytes = SyntheticELF().bytes()
        bytes += Array("IKCFG_ST".utf8) + storedGzip(Array(config.utf8)) + Array("IKCFG_ED".utf8)
        let inspection = KernelInspection.inspect(InMemoryImage(bytes))
        #expect(inspection.embeddedConfig == config)

        var broken = SyntheticELF().bytes() + Array("IKCFG_ST".utf8) + [0x1f, 0x8b, 8, 0, 0, 0] + Array("IKCFG_ED".utf8)
        #expect(KernelInspection.inspect(InMemoryImage(broken)).embeddedConfigError?.contains("cannot be decompressed") == true)
        broken = SyntheticELF().bytes() + Array("IKCFG_ST".utf8)
        #expect(KernelInspection.inspect(InMemoryImage(broken)).embeddedConfigError?.contains("no IKCFG_ED") == true)
    }

    @Test("a gzip file is looked into")
    func gzip() {
        let inner = syntheticArm64Image()
        let inspection = KernelInspection.inspect(InMemoryImage(storedGzip(inner)))
        #expect(inspection.format == .compressed(format: "gzip"))
        #expect(inspection.contents.first?.format == .arm64Image)
        #expect(inspection.problems[.aarch64]?.contains("gzip") == true)
    }

    /// The layers of `inspection`, outermost first.
    static func layers(_ inspection: KernelInspection) -> [KernelInspection] {
        var result = [inspection]
        while let inner = result.last?.contents.first { result.append(inner) }
        return result
    }

    @Test("a gzip file that decompresses to itself ends at the layer limit, in little time and memory")
    func quine() throws {
        // Before the limit this recursed until the stack overflowed (SIGSEGV).
        let quine = gzipQuine
        #expect(try Inflate.gunzip(quine) == quine, "the fixture is a real quine")
        let started = ContinuousClock.now
        let inspection = KernelInspection.inspect(InMemoryImage(quine))
        #expect(ContinuousClock.now - started < .seconds(5))
        let layers = Self.layers(inspection)
        #expect(layers.count == KernelInspection.maxCompressionLayers + 1)
        let innermost = try #require(layers.last)
        let note = try #require(Self.fact(innermost, "gzip"))
        #expect(note.contains("not decompressed: this is compressed layer 5"), "\(note)")
        #expect(note.contains("at most 4 layers of compression"), "\(note)")
        #expect(inspection.problems[.x86_64]?.contains("gzip") == true)
    }

    @Test("thousands of nested gzip layers stop at the layer limit")
    func deepNesting() throws {
        // 2000 layers: before the limit this took seconds, hundreds of MiB and
        // a recursion 2000 deep; 3000 overflowed the stack.
        var bytes = Array("not a kernel".utf8)
        for _ in 0..<2000 { bytes = storedGzip(bytes) }
        let started = ContinuousClock.now
        let inspection = KernelInspection.inspect(InMemoryImage(bytes))
        #expect(ContinuousClock.now - started < .seconds(5))
        let layers = Self.layers(inspection)
        #expect(layers.count == KernelInspection.maxCompressionLayers + 1)
        #expect(Self.fact(try #require(layers.last), "gzip")?.contains("at most 4 layers") == true)
    }

    @Test("all the layers together decompress at most the inspection's limit, and the message says which limit")
    func totalOutput() throws {
        // Each layer is within the limit on its own; two together are not.
        let inner = [UInt8](repeating: 0x41, count: 40_000)
        let outer = storedGzip(storedGzip(inner))
        let limits = KernelInspection.Limits(layers: 4, decompressedBytes: 60_000)
        let layers = Self.layers(KernelInspection.inspect(InMemoryImage(outer), limits: limits))
        #expect(layers.count == 2)
        let note = try #require(Self.fact(layers[1], "gzip"))
        #expect(note.contains("more than the 19977 bytes left of the 60000 bytes one inspection decompresses in all (40023 bytes went to the layers around it)"), "\(note)")

        let alone = KernelInspection.inspect(InMemoryImage(storedGzip(inner)), limits: .init(layers: 4, decompressedBytes: 1000))
        #expect(Self.fact(alone, "gzip") == "cannot decompress: it decompresses to more than 1000 bytes, the most one inspection decompresses")
        #expect(KernelInspection.inspect(InMemoryImage(outer), limits: .init(layers: 1, decompressedBytes: 1 << 20))
            .contents.first.flatMap { Self.fact($0, "gzip") }?.contains("at most 1 layer of compression") == true)
    }
}

/// A 204-byte gzip file that decompresses to itself, by Matthew Barber
/// (blog.matthewbarber.io/2019/07/22/how-to-make-compressed-file-quines,
/// after Russ Cox's construction): stored blocks and fixed-Huffman repeats.
let gzipQuine: [UInt8] = [
    0x1f, 0x8b, 0x08, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0xff, 0x71, 0x75, 0x69, 0x6e, 0x65, 0x2e,
    0x67, 0x7a, 0x00, 0x00, 0x18, 0x00, 0xe7, 0xff, 0x1f, 0x8b, 0x08, 0x08, 0x00, 0x00, 0x00, 0x00,
    0x00, 0xff, 0x71, 0x75, 0x69, 0x6e, 0x65, 0x2e, 0x67, 0x7a, 0x00, 0x00, 0x18, 0x00, 0xe7, 0xff,
    0x42, 0x16, 0x47, 0x16, 0x07, 0x00, 0x05, 0x00, 0xfa, 0xff, 0x42, 0x16, 0x47, 0x16, 0x07, 0x00,
    0x05, 0x00, 0xfa, 0xff, 0x00, 0x05, 0x00, 0xfa, 0xff, 0x00, 0x14, 0x00, 0xeb, 0xff, 0x42, 0x16,
    0x47, 0x16, 0x07, 0x00, 0x05, 0x00, 0xfa, 0xff, 0x00, 0x05, 0x00, 0xfa, 0xff, 0x00, 0x14, 0x00,
    0xeb, 0xff, 0x42, 0x88, 0x21, 0xc4, 0x00, 0x00, 0x14, 0x00, 0xeb, 0xff, 0x42, 0x88, 0x21, 0xc4,
    0x00, 0x00, 0x14, 0x00, 0xeb, 0xff, 0x42, 0x88, 0x21, 0xc4, 0x00, 0x00, 0x14, 0x00, 0xeb, 0xff,
    0x42, 0x88, 0x21, 0xc4, 0x00, 0x00, 0x14, 0x00, 0xeb, 0xff, 0x42, 0x88, 0x21, 0xc4, 0x00, 0x00,
    0x00, 0x00, 0xff, 0xff, 0x00, 0x00, 0x00, 0xff, 0xff, 0x00, 0x0d, 0x00, 0xf2, 0xff, 0x42, 0x88,
    0x21, 0xc4, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0x00, 0x00, 0x00, 0xff, 0xff, 0x00, 0x0d, 0x00,
    0xf2, 0xff, 0x83, 0x70, 0xa0, 0x1c, 0x00, 0xff, 0x79, 0xff, 0xa9, 0xcc, 0x00, 0x00, 0x00, 0x83,
    0x70, 0xa0, 0x1c, 0x00, 0xff, 0x79, 0xff, 0xa9, 0xcc, 0x00, 0x00, 0x00,
]

/// A gzip member holding `bytes` in one stored block (RFC 1952 around RFC 1951 §3.2.4).
func storedGzip(_ bytes: [UInt8]) -> [UInt8] {
    precondition(bytes.count < 0x10000)
    var out: [UInt8] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3, 0x01]
    out += le(UInt16(bytes.count)) + le(~UInt16(bytes.count)) + bytes
    return out + le(CRC32.checksum(bytes)) + le(UInt32(bytes.count))
}
