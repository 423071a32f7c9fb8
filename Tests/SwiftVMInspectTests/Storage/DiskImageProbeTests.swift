import Foundation
import Testing
import SwiftVMMemory
import SwiftVMInspect
import SwiftVMTestSupport

/// Images made by mke2fs, as a user would make them, and hand-made headers
/// for the formats the probe must tell apart.
@Suite("Drive image checks before boot")
struct DiskImageProbeTests {
    static let mke2fs: String? = ["/sbin/mke2fs", "/usr/sbin/mke2fs"].first { FileManager.default.isExecutableFile(atPath: $0) }

    /// Runs mke2fs on a fresh file and returns the image's bytes.
    static func makeExt(_ arguments: [String], megabytes: Int = 8) throws -> [UInt8] {
        let tool = try #require(mke2fs)
        let path = NSTemporaryDirectory() + "swiftvm-probe-\(UUID().uuidString).img"
        defer { try? FileManager.default.removeItem(atPath: path) }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: tool)
        process.arguments = ["-q", "-F"] + arguments + [path, "\(megabytes)M"]
        try process.run()
        process.waitUntilExit()
        try #require(process.terminationStatus == 0)
        return try [UInt8](Data(contentsOf: URL(fileURLWithPath: path)))
    }

    @Test("an ext4 image from mke2fs reads as ext4 with its block and inode size", .enabled(if: mke2fs != nil, "needs mke2fs (Debian's e2fsprogs)"))
    func ext4() throws {
        let bytes = try Self.makeExt(["-t", "ext4", "-b", "4096", "-L", "rootfs"])
        guard case .ext(let superblock) = DiskImageProbe.identify(InMemoryImage(bytes)) else {
            Issue.record("not identified as ext")
            return
        }
        #expect(superblock.flavor == "ext4")
        #expect(superblock.revision == 1)
        #expect(superblock.blockSize == 4096)
        #expect(superblock.inodeSize == 256)
        #expect(superblock.volumeName == "rootfs")
        #expect(superblock.fileSystemSize == 8 << 20)
        #expect(DiskImageProbe.rootFindings(InMemoryImage(bytes), path: "rootfs.ext4", hasPartUUID: false).isEmpty)
    }

    @Test("ext2 and revision-0 file systems are named; revision 0 gets a warning", .enabled(if: mke2fs != nil, "needs mke2fs (Debian's e2fsprogs)"))
    func olderFlavors() throws {
        let ext2 = try Self.makeExt(["-t", "ext2"])
        guard case .ext(let superblock) = DiskImageProbe.identify(InMemoryImage(ext2)) else {
            Issue.record("not identified as ext")
            return
        }
        #expect(superblock.flavor == "ext2")
        let rev0 = try Self.makeExt(["-t", "ext2", "-r", "0"])
        let findings = DiskImageProbe.rootFindings(InMemoryImage(rev0), path: "old.img", hasPartUUID: false)
        #expect(findings.map(\.severity) == [.warning])
        #expect(findings.first?.message.contains("revision 0") == true)
    }

    @Test("a truncated image is an error that gives both sizes", .enabled(if: mke2fs != nil, "needs mke2fs (Debian's e2fsprogs)"))
    func truncated() throws {
        let bytes = try Self.makeExt(["-t", "ext4", "-b", "4096"])
        let cut = InMemoryImage(Array(bytes.prefix(3 << 20)))
        let findings = DiskImageProbe.rootFindings(cut, path: "rootfs.ext4", hasPartUUID: false)
        #expect(findings.first?.severity == .error)
        #expect(findings.first?.message.contains("truncated") == true)
        #expect(findings.first?.message.contains("\(8 << 20) bytes") == true)
        #expect(findings.first?.message.contains("\(3 << 20) bytes") == true)
    }

    static func mbr() -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: 8192)
        bytes[446 + 4] = 0x83  // a Linux partition
        bytes[510] = 0x55
        bytes[511] = 0xaa
        return bytes
    }

    static func gpt() -> [UInt8] {
        var bytes = mbr()
        bytes[446 + 4] = 0xee  // protective MBR
        bytes.replaceSubrange(512..<520, with: Array("EFI PART".utf8))
        return bytes
    }

    @Test("a partitioned disk needs a PARTUUID", arguments: [(mbr(), "MBR"), (gpt(), "GPT")])
    func partitioned(bytes: [UInt8], kind: String) {
        let findings = DiskImageProbe.rootFindings(InMemoryImage(bytes), path: "disk.img", hasPartUUID: false)
        #expect(findings.first?.severity == .error)
        #expect(findings.first?.message.contains(kind) == true)
        #expect(findings.first?.message.contains("partuuid=") == true)
        #expect(DiskImageProbe.rootFindings(InMemoryImage(bytes), path: "disk.img", hasPartUUID: true).isEmpty)
    }

    @Test("other content is named, and zeros or an empty file tell how to build a rootfs", arguments: [
        (Array("hsqs".utf8) + [UInt8](repeating: 1, count: 8192), "squashfs", DiskImageFinding.Severity.warning),
        (Array("XFSB".utf8) + [UInt8](repeating: 1, count: 8192), "XFS", .warning),
        ([0x1f, 0x8b, 0x08] + [UInt8](repeating: 1, count: 8192), "gzip", .error),
        ([UInt8](repeating: 0, count: 8192), "mke2fs -t ext4 -d", .error),
        ([], "is empty", .error),
        ([UInt8](repeating: 0x5a, count: 8192), "0xEF53", .warning),
    ])
    func otherContent(bytes: [UInt8], expected: String, severity: DiskImageFinding.Severity) {
        let findings = DiskImageProbe.rootFindings(InMemoryImage(bytes), path: "x.img", hasPartUUID: false)
        #expect(findings.count == 1)
        #expect(findings.first?.severity == severity)
        #expect(findings.first?.message.contains(expected) == true, "\(findings)")
    }
}
