import SwiftVMBoot
import SwiftVMInspect
import SwiftVMMemory

/// Inspection targets: what `swiftvm inspect` and the pre-flight checks read.
enum InspectFuzz {
    /// The input is a kernel file (any format, gzip layers included); it is
    /// also inflated as gzip and raw DEFLATE, searched for symbols and, as
    /// text, parsed as a kernel .config. Decompression is capped at 4 MiB.
    static func kernel(_ data: UnsafeRawBufferPointer) {
        let bytes = Array(data)
        let image = InMemoryImage(bytes)
        let inspection = KernelInspection.inspect(image, limits: .init(layers: 3, decompressedBytes: 4 << 20))
        _ = inspection
        _ = try? Inflate.gunzip(bytes, limit: 1 << 20)
        _ = try? Inflate.inflate(bytes, limit: 1 << 20)
        if let symbols = KernelSymbols(image: image) {
            _ = symbols.describe(0xffff_ffff_8100_0000)
        }
        _ = try? KernelConfig.parse(String(decoding: bytes, as: UTF8.self))
    }

    /// The input is a disk image: read as ext2/3/4 (root directory, the
    /// usual init paths, the kernel's init search for both architectures)
    /// and probed the way the pre-flight checks a root drive.
    static func ext4(_ data: UnsafeRawBufferPointer) {
        let image = InMemoryImage(Array(data))
        _ = DiskImageProbe.identify(image)
        _ = DiskImageProbe.rootFindings(image, path: "fuzz.ext4", hasPartUUID: false)
        guard let reader = try? Ext4Reader(image, limits: .init(bytesRead: 8 << 20, steps: 20_000)) else { return }
        if let root = try? reader.root() {
            _ = try? reader.listDirectory(root)
            _ = try? reader.read(root, maxBytes: 4096)
        }
        for path in ["/sbin/init", "/etc/init", "/bin/sh", "/lib/ld-linux.so.2", "/a/../b/./c"] {
            if let inode = try? reader.lookup(path, followFinalSymlink: false) {
                _ = try? reader.readLink(inode)
                _ = try? reader.read(inode, maxBytes: 4096)
            }
            _ = try? reader.resolve(path)
        }
        for arch in InitDiscovery.Architecture.allCases {
            _ = InitDiscovery.find(in: reader, initParameter: nil, arch: arch)
        }
        _ = InitDiscovery.find(in: reader, initParameter: "/init", arch: .x86_64)
    }
}
