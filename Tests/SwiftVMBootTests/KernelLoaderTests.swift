import Testing
import SwiftVMMemory
@testable import SwiftVMBoot
import SwiftVMTestSupport

@Suite("KernelLoader")
struct KernelLoaderTests {
    /// Loads `image` into 128 MiB of RAM and returns the error it throws.
    func loadError(_ image: [UInt8], memorySize: UInt64 = 128 << 20) throws -> KernelImageError? {
        let memory = try makeMemory(size: memorySize)
        return #expect(throws: KernelImageError.self) {
            try KernelLoader.loadX86Vmlinux(InMemoryImage(image), into: memory)
        }
    }

    @Test("a valid vmlinux: segments copied, .bss zeroed, entry and range reported")
    func loadsSegments() throws {
        let memory = try makeMemory()
        // Dirty the .bss range first so zeroing is observable.
        try memory.write([UInt8](repeating: 0xee, count: 0x1000), at: GuestAddress(0x100_0000))
        let kernel = try KernelLoader.loadX86Vmlinux(SyntheticELF().image, into: memory)
        #expect(kernel == LoadedKernel(
            entry: GuestAddress(0x100_0000), lowestAddress: GuestAddress(0x100_0000), endAddress: GuestAddress(0x110_0003)))
        #expect(try memory.read(at: GuestAddress(0x100_0000), count: 200) == Array(1...200))
        #expect(try memory.read(at: GuestAddress(0x100_0000 + 200), count: 0x1000 - 200).allSatisfy { $0 == 0 })
        #expect(try memory.read(at: GuestAddress(0x110_0000), count: 3) == [0xaa, 0xbb, 0xcc])
    }

    @Test("non-PT_LOAD program headers are skipped")
    func skipsOtherSegments() throws {
        var elf = SyntheticELF()
        elf.segments.insert(.init(type: 4, physicalAddress: 0, contents: [1, 2, 3, 4], memorySize: 4), at: 0)  // PT_NOTE
        let kernel = try KernelLoader.loadX86Vmlinux(elf.image, into: try makeMemory())
        #expect(kernel.lowestAddress == GuestAddress(0x100_0000))
    }

    @Test("bzImage: names the protocol and asks for vmlinux")
    func bzImage() throws {
        let error = try loadError(syntheticBzImage(version: 0x020f))
        #expect(error == .bzImage(protocolVersion: 0x020f))
        #expect(error?.description == "this is a bzImage (Linux boot protocol 2.15), a compressed kernel with a real-mode setup stub;"
            + " swiftvm boots x86_64 guests from the uncompressed ELF `vmlinux` at the top of the kernel build tree (make vmlinux)")
    }

    @Test("arm64 Image: says arm64 and asks for an x86_64 vmlinux")
    func arm64() throws {
        let error = try loadError(syntheticArm64Image())
        #expect(error == .arm64Image)
        let text = try #require(error?.description)
        #expect(text.contains("arm64 kernel Image"))
        #expect(text.contains("x86_64") && text.contains("vmlinux"))
    }

    @Test(
        "compressed: names the compression and the command to undo it",
        arguments: [
            ([0x1f, 0x8b, 0x08], "gzip", "gunzip -c FILE > vmlinux"),
            ([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00], "xz", "xz -dc FILE > vmlinux"),
            ([0x28, 0xb5, 0x2f, 0xfd], "zstd", "zstd -dc FILE > vmlinux"),
        ] as [([UInt8], String, String)])
    func compressed(magic: [UInt8], format: String, command: String) throws {
        let error = try loadError(magic + [UInt8](repeating: 0, count: 64))
        #expect(error == .compressed(format: format))
        let text = try #require(error?.description)
        #expect(text.contains("\(format)-compressed"))
        #expect(text.contains(command))
    }

    @Test func empty() throws {
        let error = try loadError([])
        #expect(error == .empty)
        #expect(error?.description.contains("empty") == true)
        #expect(error?.description.contains("vmlinux") == true)
    }

    @Test func unknownFormat() throws {
        let error = try loadError(Array("#!/bin/sh\necho".utf8))
        #expect(error == .unknownFormat(leadingBytes: Array("#!/bin/s".utf8)))
        #expect(error?.description.contains("23 21 2f 62 69 6e 2f 73") == true)
    }

    @Test("truncated ELF header")
    func truncatedHeader() throws {
        let error = try loadError(Array(SyntheticELF().bytes().prefix(40)))
        #expect(error == .truncatedHeader(fileSize: 40))
        #expect(error?.description == "the ELF file is truncated: the ELF header needs bytes up to 64 but the file has 40;"
            + " rebuild the kernel or copy `vmlinux` again")
    }

    @Test("truncated program header table names the header and both sizes")
    func truncatedProgramHeaders() throws {
        // Header (64) + first program header (56) + half of the second.
        let error = try loadError(Array(SyntheticELF().bytes().prefix(64 + 56 + 20)))
        #expect(error == .truncatedProgramHeader(index: 1, end: 176, fileSize: 140))
        #expect(error?.description.hasPrefix("the ELF file is truncated: program header 1 needs bytes up to 176 but the file has 140") == true)
    }

    @Test("segment contents beyond the end of the file")
    func segmentBeyondFile() throws {
        var elf = SyntheticELF()
        elf.segments[1].fileSize = 100
        let bytes = elf.bytes()
        let error = try loadError(bytes)
        // Segment 1's data starts right after segment 0's 200 bytes.
        #expect(error == .truncatedSegment(index: 1, end: 176 + 200 + 100, fileSize: UInt64(bytes.count)))
        #expect(error?.description.contains("segment 1 needs bytes up to 476 but the file has 379") == true)
    }

    @Test("wrong machine names the architecture and e_machine", arguments: [(183, "AArch64"), (243, "RISC-V"), (21, "PowerPC64"), (40, "ARM")] as [(UInt16, String)])
    func wrongMachine(machine: UInt16, name: String) throws {
        var elf = SyntheticELF()
        elf.machine = machine
        let error = try loadError(elf.bytes())
        #expect(error == .wrongMachine(machine: machine))
        #expect(error?.description.hasPrefix("this is an ELF for \(name) (e_machine \(machine)), not x86_64") == true)
        #expect(error?.description.contains("make ARCH=x86_64 vmlinux") == true)
    }

    @Test("32-bit ELF")
    func elf32() throws {
        var elf = SyntheticELF()
        elf.elfClass = 1
        elf.machine = 3
        let error = try loadError(elf.bytes())
        #expect(error == .unsupportedELFClass(class: 32, machine: 3))
        #expect(error?.description.hasPrefix("this is a 32-bit ELF for i386 (e_machine 3); swiftvm boots 64-bit kernels") == true)
    }

    @Test("a relocatable object is not a kernel")
    func relocatable() throws {
        var elf = SyntheticELF()
        elf.type = 1
        let error = try loadError(elf.bytes())
        #expect(error == .notExecutable(type: 1))
        #expect(error?.description.contains("relocatable object file") == true)
    }

    @Test("no PT_LOAD segments")
    func noLoad() throws {
        var elf = SyntheticELF()
        elf.segments = [.init(type: 4, physicalAddress: 0, contents: [0], memorySize: 1)]
        #expect(try loadError(elf.bytes()) == .noLoadableSegments)
        elf.segments = []
        #expect(try loadError(elf.bytes()) == .noLoadableSegments)
    }

    @Test("p_filesz larger than p_memsz")
    func fileLargerThanMemory() throws {
        var elf = SyntheticELF()
        elf.segments[0].memorySize = 100
        #expect(try loadError(elf.bytes()) == .fileSizeExceedsMemorySize(index: 0, fileSize: 200, memorySize: 100))
    }

    @Test("offsets that overflow 64 bits")
    func overflow() throws {
        var elf = SyntheticELF()
        elf.segments[0].offset = .max - 10
        #expect(try loadError(elf.bytes()) == .addressOverflow(index: 0))
        var far = SyntheticELF()
        far.programHeaderOffset = .max - 8
        #expect(try loadError(far.bytes()) == .truncatedProgramHeader(index: 0, end: .max, fileSize: UInt64(far.bytes().count)))
    }

    @Test("unexpected e_phentsize")
    func programHeaderSize() throws {
        var elf = SyntheticELF()
        elf.programHeaderEntrySize = 32
        #expect(try loadError(elf.bytes()) == .badProgramHeaderSize(32))
    }

    @Test("a segment that does not fit in RAM names its range, the RAM size, and --memory")
    func outsideRAM() throws {
        var elf = SyntheticELF()
        elf.segments[1].memorySize = 200 << 20
        let error = try loadError(elf.bytes(), memorySize: 64 << 20)
        #expect(error == .segmentOutsideRAM(index: 1, start: 0x110_0000, end: 0x110_0000 + (200 << 20), ramSize: 64 << 20))
        #expect(error?.description == "segment 1 [0x1100000, 0xd900000) does not fit in guest RAM (64 MiB);"
            + " give the guest more --memory (at least 217 MiB, plus room for the kernel to run)")
    }

    @Test("a segment in the MMIO gap cannot be fixed with more memory")
    func inGap() throws {
        var elf = SyntheticELF()
        elf.segments[1].physicalAddress = 0xc000_0000
        let error = try loadError(elf.bytes(), memorySize: 4 << 30)
        #expect(error?.description.contains("overlaps the MMIO gap") == true)
    }

    @Test("a segment below 1 MiB would overwrite the boot structures")
    func lowSegment() throws {
        var elf = SyntheticELF()
        elf.segments[0].physicalAddress = 0x8000
        elf.entry = 0x8000
        #expect(try loadError(elf.bytes()) == .segmentBelowHighMemory(index: 0, start: 0x8000))
    }

    @Test("an entry point outside every segment")
    func badEntry() throws {
        var elf = SyntheticELF()
        elf.entry = 0x200_0000
        #expect(try loadError(elf.bytes()) == .entryOutsideSegments(entry: 0x200_0000))
    }

    @Test("nothing is written when a later segment fails its checks")
    func checksBeforeWriting() throws {
        let memory = try makeMemory()
        var elf = SyntheticELF()
        elf.segments[1].memorySize = 1 << 30
        #expect(throws: KernelImageError.self) { try KernelLoader.loadX86Vmlinux(elf.image, into: memory) }
        #expect(try memory.read(at: GuestAddress(0x100_0000), count: 200).allSatisfy { $0 == 0 })
    }
}
