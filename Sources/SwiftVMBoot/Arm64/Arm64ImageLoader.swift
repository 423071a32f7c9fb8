import SwiftVMMemory

/// Loads an arm64 Linux `Image` (Documentation/arch/arm64/booting.rst).
public enum Arm64ImageLoader {
    /// Copies `image` to the start of RAM (a 2 MiB-aligned base) plus the
    /// header's text_offset, after checking that it is a little-endian,
    /// 4 KiB-page arm64 Image and that it fits below the device tree.
    ///
    /// The entry point is the first byte of the Image: the boot CPU starts
    /// there with X0 holding the device tree's address. `endAddress` is the
    /// load address plus image_size (which covers .bss), or the file size when
    /// that is larger or image_size is 0.
    ///
    /// A 16 KiB or 64 KiB page kernel is an error, not a warning: the
    /// project follows Firecracker's 4 KiB-only policy (the seed), and a
    /// kernel whose granule the CPU lacks stops in early assembly before any
    /// console exists, so the failure would otherwise be a silent hang.
    /// An unspecified page size (kernels before 3.17) is accepted.
    public static func load(_ image: some ImageSource, into memory: GuestMemory) throws(Arm64ImageError) -> LoadedKernel {
        let header = try checkedHeader(image)
        let base = Arm64Layout.ramStart.rawValue
        let span = max(header.imageSize, image.size)
        let ramSize = memory.size
        let limit = Arm64Layout.fdtAddress(memorySize: ramSize).rawValue
        let (start, startOverflow) = base.addingReportingOverflow(header.effectiveTextOffset)
        let (end, endOverflow) = start.addingReportingOverflow(span)
        guard !startOverflow, !endOverflow, end <= limit, image.size <= UInt64(Int.max) else {
            throw .doesNotFit(start: startOverflow ? .max : start, end: startOverflow || endOverflow ? .max : end, limit: limit, ramSize: ramSize)
        }
        let target: UnsafeMutableRawBufferPointer
        do throws(GuestMemoryError) {
            target = try memory.checkedBytes(at: GuestAddress(start), count: Int(image.size))
        } catch {
            throw .doesNotFit(start: start, end: end, limit: limit, ramSize: ramSize)
        }
        do throws(ImageReadError) { try image.read(at: 0, into: target) } catch { throw .readFailed(error) }
        return LoadedKernel(entry: GuestAddress(start), lowestAddress: GuestAddress(start), endAddress: GuestAddress(end))
    }

    /// Identifies the file and parses its header, turning every other kind of
    /// file into an error that names it.
    public static func checkedHeader(_ image: some ImageSource) throws(Arm64ImageError) -> Arm64ImageHeader {
        let format: KernelFormat
        do throws(ImageReadError) { format = try KernelFormat.probe(image) } catch { throw .readFailed(error) }
        switch format {
        case .arm64Image: break
        case .empty: throw .empty
        case .elf(let bits, let machine, _): throw .elf(class: bits, machine: machine)
        case .bzImage(let version): throw .bzImage(protocolVersion: version)
        case .compressed(let name): throw .compressed(format: name)
        case .peImage, .unknown:
            // The magic sits at 0x38: a file cut short before it is truncated, not foreign.
            guard image.size >= UInt64(Arm64ImageHeader.size) else { throw .truncatedHeader(fileSize: image.size) }
            if format == .peImage { throw .peImage }
            let leading = (try? image.bytes(at: 0, count: 8)) ?? []
            throw .unknownFormat(leadingBytes: leading)
        }
        guard image.size >= UInt64(Arm64ImageHeader.size) else { throw .truncatedHeader(fileSize: image.size) }
        let bytes: [UInt8]
        do throws(ImageReadError) { bytes = try image.bytes(at: 0, count: Arm64ImageHeader.size) } catch { throw .readFailed(error) }
        guard let header = Arm64ImageHeader(bytes) else { throw .truncatedHeader(fileSize: image.size) }
        guard !header.isBigEndian else { throw .bigEndian }
        switch header.pageSize {
        case .size4K, .unspecified: break
        case .size16K, .size64K: throw .unsupportedPageSize(header.pageSize)
        }
        return header
    }
}
