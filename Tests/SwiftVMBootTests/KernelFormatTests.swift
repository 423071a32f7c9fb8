import Testing
import SwiftVMMemory
@testable import SwiftVMBoot
import SwiftVMTestSupport

@Suite("KernelFormat")
struct KernelFormatTests {
    @Test func x86_64ELF() {
        #expect(KernelFormat.detect(SyntheticELF().image) == .elf(class: 64, machine: 62, machineName: "x86_64"))
    }

    @Test func otherELFs() {
        var arm = SyntheticELF()
        arm.machine = 183
        #expect(KernelFormat.detect(arm.image) == .elf(class: 64, machine: 183, machineName: "AArch64"))
        var i386 = SyntheticELF()
        i386.elfClass = 1
        i386.machine = 3
        #expect(KernelFormat.detect(i386.image) == .elf(class: 32, machine: 3, machineName: "i386"))
        var s390 = SyntheticELF()
        s390.byteOrder = 2
        s390.machine = UInt16(22).byteSwapped
        #expect(KernelFormat.detect(s390.image) == .elf(class: 64, machine: 22, machineName: "s390"))
    }

    @Test("bzImage, with or without the EFI stub's MZ")
    func bzImage() {
        #expect(KernelFormat.detect(InMemoryImage(syntheticBzImage(version: 0x020f))) == .bzImage(protocolVersion: 0x020f))
        #expect(KernelFormat.detect(InMemoryImage(syntheticBzImage(version: 0x020c, efiStub: false))) == .bzImage(protocolVersion: 0x020c))
    }

    @Test("arm64 Image wins over its EFI stub's MZ")
    func arm64() {
        #expect(KernelFormat.detect(InMemoryImage(syntheticArm64Image())) == .arm64Image)
    }

    @Test func peImage() {
        #expect(KernelFormat.detect(InMemoryImage(Array("MZ".utf8) + [UInt8](repeating: 0, count: 100))) == .peImage)
    }

    @Test(
        "compressed files by magic",
        arguments: [
            ([0x1f, 0x8b, 0x08, 0x00], "gzip"),
            ([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00, 0x00], "xz"),
            ([0x28, 0xb5, 0x2f, 0xfd, 0x00], "zstd"),
            ([0x42, 0x5a, 0x68, 0x39], "bzip2"),
            ([0x02, 0x21, 0x4c, 0x18], "lz4"),
            ([0x04, 0x22, 0x4d, 0x18], "lz4"),
            ([0x5d, 0x00, 0x00, 0x80], "lzma"),
            ([0x89, 0x4c, 0x5a, 0x4f, 0x00, 0x0d, 0x0a, 0x1a, 0x0a], "lzo"),
        ] as [([UInt8], String)])
    func compressed(magic: [UInt8], format: String) {
        #expect(KernelFormat.detect(InMemoryImage(magic + [1, 2, 3])) == .compressed(format: format))
    }

    @Test func emptyAndUnknown() {
        #expect(KernelFormat.detect(InMemoryImage([])) == .empty)
        #expect(KernelFormat.detect(InMemoryImage(Array("#!/bin/sh\n".utf8))) == .unknown)
        #expect(KernelFormat.detect(InMemoryImage([0x7f])) == .unknown)
    }

    @Test("reads only the first 4 KiB")
    func probeSize() {
        let source = CountingImage(size: 1 << 30)
        _ = KernelFormat.detect(source)
        #expect(source.largestRead <= 4096)
    }
}

/// An image of zeros that records the largest read it served.
private final class CountingImage: ImageSource {
    let size: UInt64
    var largestRead = 0

    init(size: UInt64) { self.size = size }

    func read(at offset: UInt64, into buffer: UnsafeMutableRawBufferPointer) throws(ImageReadError) {
        largestRead = max(largestRead, buffer.count)
        buffer.initializeMemory(as: UInt8.self, repeating: 0)
    }
}
