import SwiftVMMemory

/// Where a loaded kernel sits in guest memory.
public struct LoadedKernel: Equatable, Sendable {
    /// The 64-bit entry point (e_entry): RIP at the first instruction.
    public var entry: GuestAddress
    /// The lowest physical address any segment occupies.
    public var lowestAddress: GuestAddress
    /// One past the highest byte any segment occupies (p_paddr + p_memsz).
    public var endAddress: GuestAddress

    public init(entry: GuestAddress, lowestAddress: GuestAddress, endAddress: GuestAddress) {
        self.entry = entry
        self.lowestAddress = lowestAddress
        self.endAddress = endAddress
    }
}

/// Loads kernel images into guest memory.
public enum KernelLoader {
    /// Loads an x86_64 ELF `vmlinux`: each PT_LOAD segment's file bytes go to
    /// its physical address (p_paddr) and the rest of p_memsz is zeroed (.bss).
    ///
    /// The kernel is entered at e_entry through the 64-bit boot protocol
    /// (boot.rst); vmlinux's e_entry is a physical address, startup_64.
    /// Everything in the file is checked before any byte is written.
    public static func loadX86Vmlinux(_ image: some ImageSource, into memory: GuestMemory) throws(KernelImageError) -> LoadedKernel {
        let (header, segments) = try checkedSegments(image, memory: memory)
        for segment in segments {
            // The destination was checked in checkedSegments; this cannot fail
            // unless guest memory changed shape in between.
            let target: UnsafeMutableRawBufferPointer
            do throws(GuestMemoryError) {
                target = try memory.checkedBytes(at: GuestAddress(segment.physicalAddress), count: Int(segment.memorySize))
            } catch {
                throw .segmentOutsideRAM(
                    index: segment.index, start: segment.physicalAddress,
                    end: segment.physicalAddress + segment.memorySize, ramSize: memory.size)
            }
            let fileBytes = Int(segment.fileSize)
            do throws(ImageReadError) {
                try image.read(at: segment.offset, into: UnsafeMutableRawBufferPointer(rebasing: target[0..<fileBytes]))
            } catch {
                throw .readFailed(error)
            }
            UnsafeMutableRawBufferPointer(rebasing: target[fileBytes...]).initializeMemory(as: UInt8.self, repeating: 0)
        }
        let lowest = segments.map(\.physicalAddress).min() ?? 0
        let end = segments.map { $0.physicalAddress + $0.memorySize }.max() ?? 0
        return LoadedKernel(entry: GuestAddress(header.entry), lowestAddress: GuestAddress(lowest), endAddress: GuestAddress(end))
    }

    /// A PT_LOAD segment that passed every check.
    struct Segment {
        var index: Int
        var offset: UInt64
        var physicalAddress: UInt64
        var fileSize: UInt64
        var memorySize: UInt64
    }

    /// Identifies the file, parses the ELF64 header, and checks that it is an
    /// x86_64 executable.
    public static func elfHeader(_ image: some ImageSource) throws(KernelImageError) -> ELF64Header {
        let format: KernelFormat
        do throws(ImageReadError) { format = try KernelFormat.probe(image) } catch { throw .readFailed(error) }
        switch format {
        case .elf(let bits, let machine, _):
            guard bits == 64 else { throw .unsupportedELFClass(class: bits, machine: machine) }
        case .bzImage(let version): throw .bzImage(protocolVersion: version)
        case .arm64Image: throw .arm64Image
        case .peImage: throw .peImage
        case .compressed(let name): throw .compressed(format: name)
        case .empty: throw .empty
        case .unknown:
            let leading = (try? image.bytes(at: 0, count: Int(min(image.size, 8)))) ?? []
            throw .unknownFormat(leadingBytes: leading)
        }
        guard image.size >= UInt64(ELF64Header.size) else { throw .truncatedHeader(fileSize: image.size) }
        let bytes = try read(image, at: 0, count: ELF64Header.size)
        guard let header = ELF64Header(bytes) else { throw .truncatedHeader(fileSize: image.size) }
        // e_ident[EI_DATA] = 1 is little-endian (ELFDATA2LSB).
        guard bytes[5] == 1 else { throw .bigEndianELF(machine: header.machine.byteSwapped) }
        guard header.machine == ELFMachine.x86_64 else { throw .wrongMachine(machine: header.machine) }
        guard header.type == ELF64Header.executable || header.type == ELF64Header.sharedObject else {
            throw .notExecutable(type: header.type)
        }
        return header
    }

    /// Every PT_LOAD segment, checked against the file and guest RAM.
    static func checkedSegments(
        _ image: some ImageSource, memory: GuestMemory
    ) throws(KernelImageError) -> (header: ELF64Header, segments: [Segment]) {
        let header = try elfHeader(image)
        let count = Int(header.programHeaderCount)
        guard count > 0 else { throw .noLoadableSegments }
        guard Int(header.programHeaderEntrySize) == ELF64Header.programHeaderSize else {
            throw .badProgramHeaderSize(header.programHeaderEntrySize)
        }
        // Find the first program header that runs past the end of the file.
        let entrySize = UInt64(ELF64Header.programHeaderSize)
        for index in 0..<count {
            let (end, overflow) = header.programHeaderOffset.addingReportingOverflow(UInt64(index + 1) * entrySize)
            if overflow || end > image.size {
                throw .truncatedProgramHeader(index: index, end: overflow ? .max : end, fileSize: image.size)
            }
        }
        let table = try read(image, at: header.programHeaderOffset, count: count * ELF64Header.programHeaderSize)

        var segments: [Segment] = []
        for index in 0..<count {
            guard let program = ELF64ProgramHeader(table, at: index * ELF64Header.programHeaderSize) else {
                throw .truncatedProgramHeader(index: index, end: header.programHeaderOffset + UInt64(index + 1) * entrySize, fileSize: image.size)
            }
            guard program.type == ELF64ProgramHeader.load else { continue }
            segments.append(try check(program, index: index, fileSize: image.size, memory: memory))
        }
        guard !segments.isEmpty else { throw .noLoadableSegments }
        guard segments.contains(where: { header.entry >= $0.physicalAddress && header.entry - $0.physicalAddress < $0.memorySize }) else {
            throw .entryOutsideSegments(entry: header.entry)
        }
        return (header, segments)
    }

    private static func check(_ program: ELF64ProgramHeader, index: Int, fileSize: UInt64, memory: GuestMemory) throws(KernelImageError) -> Segment {
        let (fileEnd, fileOverflow) = program.offset.addingReportingOverflow(program.fileSize)
        let (memoryEnd, memoryOverflow) = program.physicalAddress.addingReportingOverflow(program.memorySize)
        guard !fileOverflow, !memoryOverflow else { throw .addressOverflow(index: index) }
        guard fileEnd <= fileSize else { throw .truncatedSegment(index: index, end: fileEnd, fileSize: fileSize) }
        guard program.fileSize <= program.memorySize else {
            throw .fileSizeExceedsMemorySize(index: index, fileSize: program.fileSize, memorySize: program.memorySize)
        }
        guard program.physicalAddress >= X86Layout.highMemory.rawValue else {
            throw .segmentBelowHighMemory(index: index, start: program.physicalAddress)
        }
        guard program.memorySize <= UInt64(Int.max),
            memory.region(containing: GuestAddress(program.physicalAddress), length: program.memorySize) != nil
        else {
            throw .segmentOutsideRAM(index: index, start: program.physicalAddress, end: memoryEnd, ramSize: memory.size)
        }
        return Segment(
            index: index, offset: program.offset, physicalAddress: program.physicalAddress,
            fileSize: program.fileSize, memorySize: program.memorySize)
    }

    private static func read(_ image: some ImageSource, at offset: UInt64, count: Int) throws(KernelImageError) -> [UInt8] {
        do throws(ImageReadError) { return try image.bytes(at: offset, count: count) } catch { throw .readFailed(error) }
    }
}
