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

/// The loadable segments of an x86_64 vmlinux and its entry point, checked
/// against the file and against the guest-physical layout swiftvm builds.
///
/// This is the one set of rules for "boots" and "does not boot": `swiftvm
/// run` loads from it (after ``checkFits(in:)`` for the guest's RAM), and
/// `swiftvm inspect kernel` reports whatever its initializer throws.
public struct VmlinuxLayout: Equatable, Sendable {
    /// One PT_LOAD segment.
    public struct Segment: Equatable, Sendable {
        /// Its index in the program header table, as error messages name it.
        public var index: Int
        /// p_offset: where its bytes start in the file.
        public var offset: UInt64
        /// p_paddr: where it goes in guest-physical memory.
        public var physicalAddress: UInt64
        /// p_filesz: the bytes copied from the file.
        public var fileSize: UInt64
        /// p_memsz: the bytes it occupies; the rest past fileSize is zeroed (.bss).
        public var memorySize: UInt64

        public init(index: Int, _ program: ELF64ProgramHeader) {
            self.index = index
            offset = program.offset
            physicalAddress = program.physicalAddress
            fileSize = program.fileSize
            memorySize = program.memorySize
        }
    }

    /// e_entry: the physical address of startup_64, where the vCPU starts.
    public var entry: GuestAddress
    /// The PT_LOAD segments in file order.
    public var segments: [Segment]
    /// The lowest physical address any segment occupies.
    public var lowestAddress: GuestAddress
    /// One past the highest byte any segment occupies (p_paddr + p_memsz).
    public var endAddress: GuestAddress

    /// Reads and checks everything that does not depend on the guest's RAM
    /// size: the ELF header (an x86_64 executable), the program header table,
    /// and each segment (inside the file, p_filesz <= p_memsz, no 64-bit
    /// overflow, nothing below 1 MiB where the boot structures live), and
    /// that the entry point lies in a segment. Throws the first problem, in
    /// segment order.
    public init(_ image: some ImageSource) throws(KernelImageError) {
        let header = try KernelLoader.elfHeader(image)
        let segments = try Self.loadSegments(image, header: header)
        for segment in segments { try segment.check(imageSize: image.size) }
        guard segments.contains(where: { $0.contains(header.entry) }) else {
            throw .entryOutsideSegments(entry: header.entry)
        }
        let span = Self.span(of: segments)
        self.entry = GuestAddress(header.entry)
        self.segments = segments
        self.lowestAddress = GuestAddress(span.lowest)
        self.endAddress = GuestAddress(span.end)
    }

    /// Checks that every segment lies inside one region of `memory`: the one
    /// check that depends on how much RAM the guest gets.
    public func checkFits(in memory: GuestMemory) throws(KernelImageError) {
        for segment in segments {
            guard segment.memorySize <= UInt64(Int.max),
                memory.region(containing: GuestAddress(segment.physicalAddress), length: segment.memorySize) != nil
            else {
                throw .segmentOutsideRAM(
                    index: segment.index, start: segment.physicalAddress,
                    end: segment.physicalAddress + segment.memorySize, ramSize: memory.size)
            }
        }
    }

    /// The PT_LOAD segments of an ELF64 file as its program headers state
    /// them, unchecked; `header` need not be x86_64's. Throws when the table
    /// is malformed or holds no PT_LOAD entry.
    public static func loadSegments(_ image: some ImageSource, header: ELF64Header) throws(KernelImageError) -> [Segment] {
        let segments = try header.programHeaders(in: image).enumerated()
            .filter { $0.element.type == ELF64ProgramHeader.load }
            .map { Segment(index: $0.offset, $0.element) }
        guard !segments.isEmpty else { throw .noLoadableSegments }
        return segments
    }

    /// The lowest start and the highest end of `segments`; an end that
    /// overflows wraps, which only unchecked segments can do.
    public static func span(of segments: [Segment]) -> (lowest: UInt64, end: UInt64) {
        let lowest = segments.map(\.physicalAddress).min() ?? 0
        let end = segments.map { $0.physicalAddress &+ $0.memorySize }.max() ?? 0
        return (lowest, end)
    }
}

extension VmlinuxLayout.Segment {
    /// Whether physical address `address` falls inside the segment.
    func contains(_ address: UInt64) -> Bool {
        address >= physicalAddress && address - physicalAddress < memorySize
    }

    /// The checks against the file and the fixed guest layout.
    func check(imageSize: UInt64) throws(KernelImageError) {
        let (fileEnd, fileOverflow) = offset.addingReportingOverflow(fileSize)
        let (_, memoryOverflow) = physicalAddress.addingReportingOverflow(memorySize)
        guard !fileOverflow, !memoryOverflow else { throw .addressOverflow(index: index) }
        guard fileEnd <= imageSize else { throw .truncatedSegment(index: index, end: fileEnd, fileSize: imageSize) }
        guard fileSize <= memorySize else {
            throw .fileSizeExceedsMemorySize(index: index, fileSize: fileSize, memorySize: memorySize)
        }
        guard physicalAddress >= X86Layout.highMemory.rawValue else {
            throw .segmentBelowHighMemory(index: index, start: physicalAddress)
        }
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
        let layout = try VmlinuxLayout(image)
        try layout.checkFits(in: memory)
        for segment in layout.segments {
            // checkFits placed the segment in RAM; this fails only if guest
            // memory changed shape in between.
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
        return LoadedKernel(entry: layout.entry, lowestAddress: layout.lowestAddress, endAddress: layout.endAddress)
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
        let bytes: [UInt8]
        do throws(ImageReadError) { bytes = try image.bytes(at: 0, count: ELF64Header.size) } catch { throw .readFailed(error) }
        guard let header = ELF64Header(bytes) else { throw .truncatedHeader(fileSize: image.size) }
        guard header.isLittleEndian else { throw .bigEndianELF(machine: header.machine.byteSwapped) }
        guard header.machine == ELFMachine.x86_64 else { throw .wrongMachine(machine: header.machine) }
        guard header.type == ELF64Header.executable || header.type == ELF64Header.sharedObject else {
            throw .notExecutable(type: header.type)
        }
        return header
    }
}
