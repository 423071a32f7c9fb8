import SwiftVMMemory

/// Where the initial RAM disk goes in guest RAM.
public enum InitrdPlacement {
    static let pageSize: UInt64 = 4096

    /// The highest page-aligned address at which `initrdSize` bytes fit in RAM
    /// above `kernelEnd` and below the MMIO gap.
    ///
    /// Placing it high leaves the most room below for the kernel's early
    /// allocations. It stays under 4 GiB so that the 32-bit ramdisk_image
    /// field alone can describe it (boot.rst, ramdisk_image).
    public static func address(initrdSize: UInt64, kernelEnd: GuestAddress, memory: GuestMemory) throws(InitrdError) -> GuestAddress {
        guard initrdSize > 0 else { throw .empty }
        let ceiling = X86Layout.mmioGapStart.rawValue
        let (roundedEnd, overflow) = kernelEnd.rawValue.addingReportingOverflow(pageSize - 1)
        let floor = overflow ? UInt64.max : roundedEnd & ~(pageSize - 1)

        var mostFree: UInt64 = 0
        // Regions are sorted; the highest one that fits wins.
        for region in memory.regions.reversed() {
            let top = min(region.end, ceiling)
            let bottom = max(region.start.rawValue, floor)
            guard top > bottom else { continue }
            let free = top - bottom
            mostFree = max(mostFree, free)
            guard initrdSize <= free else { continue }
            let start = (top - initrdSize) & ~(pageSize - 1)
            if start >= bottom { return GuestAddress(start) }
        }
        throw .doesNotFit(initrdSize: initrdSize, free: mostFree)
    }
}

/// Why the initrd could not be placed.
public enum InitrdError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The initrd file has no bytes.
    case empty
    /// The largest free stretch of RAM above the kernel and below the MMIO gap
    /// holds `free` bytes, fewer than the initrd needs.
    case doesNotFit(initrdSize: UInt64, free: UInt64)

    public var description: String {
        switch self {
        case .empty:
            "the initrd file is empty; pass a cpio archive (optionally compressed), or leave out --initrd"
        case .doesNotFit(let size, let free):
            "the initrd is \(describeByteCount(size)) but only \(describeByteCount(free)) of RAM are free"
                + " above the kernel below \(describeByteCount(X86Layout.mmioGapStart.rawValue));"
                + " give the guest more --memory"
        }
    }
}
