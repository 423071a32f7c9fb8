import Testing
import SwiftVMMemory
@testable import SwiftVMBoot
import SwiftVMTestSupport

/// An arm64 Image: the 64-byte header, then `payload`.
struct SyntheticArm64Image {
    var textOffset: UInt64 = 0
    var imageSize: UInt64 = 0x20_0000
    /// Little-endian, 4 KiB pages, placeable anywhere: what current kernels write.
    var flags: UInt64 = 0b1010
    var efiStub = true
    var payload: [UInt8] = Array(repeating: 0x5a, count: 0x1000 - 64)

    var bytes: [UInt8] {
        // code0: "MZ" plus an instruction when there is an EFI stub, else a branch.
        let code0: [UInt8] = efiStub ? [0x4d, 0x5a, 0x00, 0x91] : le(UInt32(0x1400_0010))
        return code0 + le(UInt32(0)) + le(textOffset) + le(imageSize) + le(flags)
            + le(UInt64(0)) + le(UInt64(0)) + le(UInt64(0))
            + [0x41, 0x52, 0x4d, 0x64] + le(UInt32(0x40))
            + payload
    }
    var image: InMemoryImage { InMemoryImage(bytes) }
}

@Suite("Arm64ImageLoader")
struct Arm64ImageLoaderTests {
    static func memory(size: UInt64 = 128 << 20) throws -> GuestMemory {
        try GuestMemory(regions: [(Arm64Layout.ramStart, size)])
    }

    func loadError(_ bytes: [UInt8], memorySize: UInt64 = 128 << 20) throws -> Arm64ImageError? {
        let memory = try Self.memory(size: memorySize)
        return #expect(throws: Arm64ImageError.self) { try Arm64ImageLoader.load(InMemoryImage(bytes), into: memory) }
    }

    @Test("a current Image loads at RAM start + text_offset; its end covers image_size", arguments: [UInt64(0), 0x8_0000])
    func loads(textOffset: UInt64) throws {
        let memory = try Self.memory()
        var image = SyntheticArm64Image()
        image.textOffset = textOffset
        let kernel = try Arm64ImageLoader.load(image.image, into: memory)
        let start = 0x8000_0000 + textOffset
        #expect(kernel == LoadedKernel(entry: GuestAddress(start), lowestAddress: GuestAddress(start), endAddress: GuestAddress(start + 0x20_0000)))
        #expect(try memory.read(at: GuestAddress(start), count: 0x1000) == image.bytes)
    }

    @Test("a pre-3.17 Image (image_size 0) goes 0x80000 above the base; a plain branch code0 is fine")
    func legacy() throws {
        var image = SyntheticArm64Image()
        image.imageSize = 0
        image.flags = 0
        image.efiStub = false
        let kernel = try Arm64ImageLoader.load(image.image, into: try Self.memory())
        #expect(kernel.entry == GuestAddress(0x8008_0000))
        #expect(kernel.endAddress == GuestAddress(0x8008_0000 + 0x1000))
    }

    @Test("header fields: endianness, page size, placement")
    func header() throws {
        var image = SyntheticArm64Image()
        image.flags = 0b1111
        let header = try #require(Arm64ImageHeader(image.bytes))
        #expect(header.isBigEndian)
        #expect(header.pageSize == .size64K)
        #expect(header.placesAnywhere)
        #expect(Arm64ImageHeader(Array(image.bytes.prefix(63))) == nil)
    }

    @Test("an arm64 vmlinux: says to pass arch/arm64/boot/Image instead")
    func arm64Vmlinux() throws {
        var elf = SyntheticELF()
        elf.machine = 183
        let error = try loadError(elf.bytes())
        #expect(error == .elf(class: 64, machine: 183))
        let text = try #require(error?.description)
        #expect(text.contains("ELF `vmlinux` of an arm64 kernel build"))
        #expect(text.contains("arch/arm64/boot/Image, not vmlinux") || text.contains("`arch/arm64/boot/Image`, not vmlinux"))
        #expect(text.contains("make ARCH=arm64 Image"))
    }

    @Test("an x86_64 vmlinux: names x86_64 and asks for an arm64 Image")
    func x86Vmlinux() throws {
        let error = try loadError(SyntheticELF().bytes())
        let text = try #require(error?.description)
        #expect(text.contains("x86_64 (e_machine 62)"))
        #expect(text.contains("cannot run in an arm64 guest"))
        #expect(text.contains("arch/arm64/boot/Image"))
    }

    @Test("an x86 bzImage: says so and asks for an arm64 Image")
    func bzImage() throws {
        let error = try loadError(syntheticBzImage(version: 0x020f))
        #expect(error == .bzImage(protocolVersion: 0x020f))
        let text = try #require(error?.description)
        #expect(text.contains("x86 bzImage (Linux boot protocol 2.15)"))
        #expect(text.contains("arch/arm64/boot/Image"))
    }

    @Test("a big-endian Image: says big-endian and which option to unset")
    func bigEndian() throws {
        var image = SyntheticArm64Image()
        image.flags = 0b1011
        let error = try loadError(image.bytes)
        #expect(error == .bigEndian)
        #expect(error?.description.contains("big-endian") == true)
        #expect(error?.description.contains("CONFIG_CPU_BIG_ENDIAN") == true)
    }

    @Test(
        "Image.gz and friends: names the compression and the command that undoes it",
        arguments: [
            ([0x1f, 0x8b, 0x08], "gzip", "gunzip -c FILE > Image"),
            ([0x28, 0xb5, 0x2f, 0xfd], "zstd", "zstd -dc FILE > Image"),
        ] as [([UInt8], String, String)])
    func compressed(magic: [UInt8], format: String, command: String) throws {
        let error = try loadError(magic + [UInt8](repeating: 0, count: 100))
        #expect(error == .compressed(format: format))
        let text = try #require(error?.description)
        #expect(text.contains("\(format)-compressed"))
        #expect(text.contains(command))
        #expect(text.contains("arch/arm64/boot/Image"))
    }

    @Test("a header cut short: says truncated, how much was needed and what there was", arguments: [8, 40, 63])
    func truncated(length: Int) throws {
        let error = try loadError(Array(SyntheticArm64Image().bytes.prefix(length)))
        #expect(error == .truncatedHeader(fileSize: UInt64(length)))
        #expect(error?.description.contains("needs 64 bytes but the file has \(length)") == true)
    }

    @Test("an Image larger than RAM: says what it needs and how much memory to give")
    func tooLarge() throws {
        var image = SyntheticArm64Image()
        image.imageSize = 200 << 20
        let error = try loadError(image.bytes, memorySize: 128 << 20)
        #expect(error == .doesNotFit(start: 0x8000_0000, end: 0x8000_0000 + (200 << 20), limit: 0x8000_0000 + (126 << 20), ramSize: 128 << 20))
        let text = try #require(error?.description)
        #expect(text.contains("guest RAM (128 MiB)"))
        #expect(text.contains("at least 202 MiB"))
    }

    @Test("a text_offset that overflows is refused, not wrapped")
    func hugeOffset() throws {
        var image = SyntheticArm64Image()
        image.textOffset = .max - 10
        let error = try loadError(image.bytes)
        #expect(error?.description.contains("past the end of the 64-bit address space") == true)
    }

    @Test("16K and 64K page kernels are refused with the Kconfig to set", arguments: [Arm64PageSize.size16K, .size64K])
    func pageSize(size: Arm64PageSize) throws {
        var image = SyntheticArm64Image()
        image.flags = 0b1000 | UInt64(size.rawValue) << 1
        let error = try loadError(image.bytes)
        #expect(error == .unsupportedPageSize(size))
        let text = try #require(error?.description)
        #expect(text.contains(size.kconfig))
        #expect(text.contains("CONFIG_ARM64_4K_PAGES=y"))
    }

    @Test("an unspecified page size is accepted")
    func unspecifiedPageSize() throws {
        var image = SyntheticArm64Image()
        image.flags = 0
        #expect(try Arm64ImageLoader.load(image.image, into: try Self.memory()).entry == GuestAddress(0x8000_0000))
    }

    @Test("a PE file without the arm64 magic, an unknown file, an empty file")
    func otherFiles() throws {
        var pe = [UInt8](repeating: 0, count: 0x80)
        pe[0] = 0x4d
        pe[1] = 0x5a
        let peError = try loadError(pe)
        #expect(peError == .peImage)
        #expect(peError?.description.contains("\"ARM\\x64\" at offset 0x38") == true)

        let unknown = try loadError([UInt8](repeating: 0x11, count: 0x80))
        #expect(unknown == .unknownFormat(leadingBytes: [UInt8](repeating: 0x11, count: 8)))
        #expect(unknown?.description.contains("starts with 11 11 11") == true)

        let empty = try loadError([])
        #expect(empty == .empty)
        #expect(empty?.description.contains("arch/arm64/boot/Image") == true)
    }
}
