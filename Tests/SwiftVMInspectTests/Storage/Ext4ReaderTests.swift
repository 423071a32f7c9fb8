import Foundation
import Testing
import SwiftVMMemory
import SwiftVMInspect
import SwiftVMTestSupport

/// The ext reader against images mke2fs made from trees, in both layouts a
/// rootfs can have: extents (ext4) and direct/indirect block maps (ext2).
@Suite("ext2/3/4 reader", .enabled(if: Ext4Fixture.mke2fs != nil, "needs mke2fs (Debian's e2fsprogs)"))
struct Ext4ReaderTests {
    /// Bytes that differ block to block, so a misplaced block shows.
    static func pattern(_ count: Int, seed: UInt32 = 1) -> [UInt8] {
        var state = seed
        return (0..<count).map { _ in
            state = state &* 1_103_515_245 &+ 12345
            return UInt8(truncatingIfNeeded: state >> 16)
        }
    }

    static let longTarget = "/usr/lib/a-directory-with-a-long-name/and-another-long-component/busybox"

    static func tree() -> [String: Ext4Fixture.Node] {
        var tree = Ext4Fixture.mountPoints
        tree["bin/busybox"] = .file(Ext4Fixture.elf())
        tree["bin/sh"] = .symlink("busybox")
        tree["sbin/init"] = .symlink("/bin/busybox")
        tree["sbin/relative"] = .symlink("../bin/busybox")
        tree["sbin/chain"] = .symlink("/sbin/relative")
        tree["sbin/loop-a"] = .symlink("loop-b")
        tree["sbin/loop-b"] = .symlink("/sbin/loop-a")
        tree["sbin/dangling"] = .symlink("/nowhere/init")
        tree["sbin/long"] = .symlink(longTarget)
        tree[String(longTarget.dropFirst())] = .text("long")
        tree["etc/motd"] = .text("hello\n", mode: 0o644)
        // 300 KiB needs the double-indirect block on a 1 KiB-block ext2 (12 + 256 blocks otherwise).
        tree["data/big"] = .file(pattern(300 * 1024))
        // Zero blocks between the islands become holes: more extents than fit in the inode.
        var sparse = [UInt8](repeating: 0, count: 64 * 1024)
        for island in 0..<8 { sparse.replaceSubrange(island * 8192..<island * 8192 + 1024, with: pattern(1024, seed: UInt32(island + 7))) }
        tree["data/sparse"] = .file(sparse)
        return tree
    }

    static func reader(type: String) throws -> (Ext4Reader, [String: Ext4Fixture.Node]) {
        let tree = tree()
        return (try Ext4Reader(InMemoryImage(try Ext4Fixture.image(tree, type: type))), tree)
    }

    @Test("files read back byte for byte, through extents and through block maps", arguments: ["ext4", "ext2"])
    func contents(type: String) throws {
        let (reader, tree) = try Self.reader(type: type)
        #expect(reader.superblock.flavor == type)
        for path in ["data/big", "data/sparse", "bin/busybox", "etc/motd"] {
            guard case .file(let expected, _) = tree[path] else { continue }
            let inode = try #require(try reader.lookup("/" + path))
            #expect(inode.fileType == .regular)
            #expect(inode.size == UInt64(expected.count))
            #expect(inode.usesExtents == (type == "ext4"))
            #expect(try reader.read(inode, maxBytes: Int.max) == expected, "\(path) differs")
        }
        let big = try #require(try reader.lookup("/data/big"))
        #expect(try reader.read(big, maxBytes: 5000) == Array(Self.pattern(300 * 1024).prefix(5000)))
        let motd = try #require(try reader.lookup("/etc/motd"))
        #expect(motd.permissions == 0o644)
        #expect(!motd.isExecutable)
    }

    @Test("symbolic links resolve as the kernel resolves them", arguments: ["ext4", "ext2"])
    func symlinks(type: String) throws {
        let (reader, _) = try Self.reader(type: type)
        let busybox = try #require(try reader.lookup("/bin/busybox"))
        for path in ["/sbin/init", "/sbin/relative", "/sbin/chain", "/bin/sh", "/sbin/../bin/./busybox", "sbin/init"] {
            #expect(try reader.lookup(path)?.number == busybox.number, "\(path)")
        }
        let chain = try reader.resolve("/sbin/chain")
        #expect(chain.path == "/bin/busybox")
        #expect(chain.links == [
            .init(path: "/sbin/chain", target: "/sbin/relative"), .init(path: "/sbin/relative", target: "../bin/busybox"),
        ])
        let link = try #require(try reader.lookup("/sbin/init", followFinalSymlink: false))
        #expect(link.fileType == .symlink)
        #expect(try reader.readLink(link) == "/bin/busybox")
        // Over 60 bytes: the target lives in a data block, not in the inode.
        let long = try #require(try reader.lookup("/sbin/long", followFinalSymlink: false))
        #expect(try reader.readLink(long) == Self.longTarget)
        #expect(try reader.lookup("/sbin/long").map { try reader.read($0, maxBytes: 10) } == Array("long".utf8))

        let dangling = try reader.resolve("/sbin/dangling")
        #expect(dangling.inode == nil)
        #expect(dangling.path == "/nowhere")
        #expect(dangling.links.count == 1)
        #expect(try reader.lookup("/no/such/file") == nil)
        #expect(throws: Ext4Error(.notADirectory, "/etc/motd is a regular file, not a directory")) {
            try reader.lookup("/etc/motd/x")
        }
        #expect(throws: Ext4Error.self) { try reader.lookup("/sbin/loop-a") }
        do {
            _ = try reader.lookup("/sbin/loop-a")
        } catch {
            #expect(error.kind == .tooManyLinks)
        }
    }

    @Test("a hashed (htree) directory lists every entry and finds each name")
    func hashedDirectory() throws {
        var tree = Ext4Fixture.mountPoints
        let names = (0..<150).map { "an-entry-with-a-fairly-long-name-\($0)" }
        for name in names { tree["many/\(name)"] = .text(name, mode: 0o644) }
        let reader = try Ext4Reader(InMemoryImage(try Ext4Fixture.image(tree, indexDirectories: true)))
        let directory = try #require(try reader.lookup("/many"))
        #expect(directory.flags & Ext4Inode.Flags.hashedDirectory != 0, "e2fsck -D did not index the directory")
        let listed = try reader.listDirectory(directory)
        #expect(Set(listed.map(\.name)) == Set(names + [".", ".."]))
        #expect(listed.filter { $0.name != "." && $0.name != ".." }.allSatisfy { $0.type == 1 })
        let last = try #require(try reader.lookup("/many/\(names[149])"))
        #expect(try reader.read(last, maxBytes: 100) == Array(names[149].utf8))
    }

    @Test("superblock facts match what mke2fs was asked for")
    func superblock() throws {
        let bytes = try Ext4Fixture.image(Ext4Fixture.mountPoints, blockSize: 4096, megabytes: 16)
        let reader = try Ext4Reader(InMemoryImage(bytes))
        #expect(reader.superblock.blockSize == 4096)
        #expect(reader.superblock.fileSystemSize == 16 << 20)
        #expect(reader.superblock.descriptorSize == 64)
        #expect(reader.superblock.notableFeatures.contains("extents"))
        #expect(reader.superblock.notableFeatures.contains("64bit"))
        #expect(Set(try reader.listDirectory(try reader.root()).map(\.name)).isSuperset(of: ["dev", "proc", "sys", "lost+found"]))
    }
}

/// Damaged images end in an `Ext4Error` that says what is wrong; never a crash or a hang.
@Suite("ext reader on damaged images", .enabled(if: Ext4Fixture.mke2fs != nil && Ext4Fixture.debugfs != nil, "needs mke2fs and debugfs (Debian's e2fsprogs)"))
struct Ext4DamageTests {
    static func image(type: String = "ext4") throws -> [UInt8] {
        var tree = Ext4Fixture.mountPoints
        tree["bin/busybox"] = .file(Ext4Fixture.elf() + Ext4ReaderTests.pattern(20000))
        tree["sbin/init"] = .symlink("/bin/busybox")
        return try Ext4Fixture.image(tree, type: type)
    }

    /// The Ext4Error `body` throws; nil when it throws nothing (another error fails the test).
    static func error(_ body: () throws -> Void) -> Ext4Error? {
        do { try body() } catch let error as Ext4Error { return error } catch {
            Issue.record("not an Ext4Error: \(error)")
        }
        return nil
    }

    @Test("not an ext file system, or too small to hold a superblock")
    func notExt() {
        #expect(Self.error { _ = try Ext4Reader(InMemoryImage([UInt8](repeating: 0, count: 4096))) }?.kind == .notExtFileSystem)
        #expect(Self.error { _ = try Ext4Reader(InMemoryImage([1, 2, 3])) }?.kind == .notExtFileSystem)
    }

    @Test("a damaged extent header or tree depth is reported on read")
    func extentHeader() throws {
        var bytes = try Self.image()
        let reader = try Ext4Reader(InMemoryImage(bytes))
        let (block, offset) = try Ext4Fixture.inodeLocation(of: "/bin/busybox", in: bytes)
        let iBlock = block * Int(reader.superblock.blockSize) + offset + 0x28
        #expect(bytes[iBlock] == 0x0a && bytes[iBlock + 1] == 0xf3)
        var deep = bytes
        deep[iBlock + 6] = 9  // eh_depth 9 > 5
        bytes[iBlock] = 0x55
        for (image, words) in [(bytes, "0xF30A"), (deep, "depth 9")] {
            let damaged = try Ext4Reader(InMemoryImage(image))
            let busybox = try #require(try damaged.lookup("/bin/busybox"))
            let error = Self.error { _ = try damaged.read(busybox, maxBytes: 100) }
            #expect(error?.kind == .corrupt)
            #expect(error?.message.contains(words) == true, "\(String(describing: error))")
        }
    }

    @Test("a file size larger than the file system is reported, not allocated")
    func hugeSize() throws {
        var bytes = try Self.image()
        let blockSize = Int(try Ext4Reader(InMemoryImage(bytes)).superblock.blockSize)
        let (block, offset) = try Ext4Fixture.inodeLocation(of: "/bin/busybox", in: bytes)
        let sizeHigh = block * blockSize + offset + 0x6c  // i_size_high
        bytes.replaceSubrange(sizeHigh..<sizeHigh + 4, with: [0xff, 0xff, 0xff, 0x7f])
        let reader = try Ext4Reader(InMemoryImage(bytes))
        let busybox = try #require(try reader.lookup("/bin/busybox"))
        let error = Self.error { _ = try reader.read(busybox, maxBytes: Int.max) }
        #expect(error?.kind == .corrupt)
        #expect(error?.message.contains("more than the") == true, "\(String(describing: error))")
        #expect(try reader.read(busybox, maxBytes: 4)  == [0x7f, 0x45, 0x4c, 0x46])
    }

    @Test("a group descriptor pointing outside the file system is reported", arguments: ["ext4", "ext2"])
    func groupDescriptor(type: String) throws {
        var bytes = try Self.image(type: type)
        let superblock = try Ext4Reader(InMemoryImage(bytes)).superblock
        let table = (Int(superblock.firstDataBlock) + 1) * Int(superblock.blockSize)
        bytes.replaceSubrange(table + 8..<table + 12, with: [0xff, 0xff, 0xff, 0x7f])  // bg_inode_table_lo
        let reader = try Ext4Reader(InMemoryImage(bytes))
        let error = Self.error { _ = try reader.lookup("/sbin/init") }
        #expect(error?.kind == .corrupt)
        #expect(error?.message.contains("group descriptor 0") == true, "\(String(describing: error))")
    }

    @Test("a directory entry whose record length is 0 is reported, not looped on")
    func recordLength() throws {
        var bytes = try Self.image()
        let reader = try Ext4Reader(InMemoryImage(bytes))
        let root = try reader.root()
        // Find the root directory's first block: the one whose first entry is "." naming inode 2.
        let blockSize = Int(reader.superblock.blockSize)
        let first = try #require((0..<bytes.count / blockSize).first { number in
            let at = number * blockSize
            return bytes[at..<at + 4].elementsEqual([2, 0, 0, 0]) && bytes[at + 6] == 1 && bytes[at + 8] == 0x2e
                && bytes[at + 12..<at + 16].elementsEqual([2, 0, 0, 0])
        })
        bytes[first * blockSize + 4] = 0
        bytes[first * blockSize + 5] = 0
        let damaged = try Ext4Reader(InMemoryImage(bytes))
        let error = Self.error { _ = try damaged.listDirectory(root) }
        #expect(error?.kind == .corrupt)
        #expect(error?.message.contains("record length 0") == true, "\(String(describing: error))")
    }

    @Test("a truncated image says so")
    func truncated() throws {
        let bytes = try Self.image()
        let reader = try Ext4Reader(InMemoryImage(Array(bytes.prefix(bytes.count / 8))))
        let busybox = Self.error {
            let inode = try reader.lookup("/bin/busybox")
            if let inode { _ = try reader.read(inode, maxBytes: Int.max) }
        }
        #expect(busybox?.kind == .truncated)
        #expect(busybox?.message.contains("truncated") == true)
    }

    @Test("random damage to the metadata ends in an answer or an Ext4Error", arguments: ["ext4", "ext2"])
    func randomDamage(type: String) throws {
        let pristine = try Self.image(type: type)
        var state: UInt64 = 0x5eed
        func next() -> Int {
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return Int(truncatingIfNeeded: state >> 33)
        }
        // The first 256 KiB holds the superblock, descriptors, bitmaps, inode tables and directories.
        let metadata = min(pristine.count, 256 * 1024)
        for _ in 0..<150 {
            var bytes = pristine
            for _ in 0..<(1 + next() % 64) { bytes[1024 + next() % (metadata - 1024)] = UInt8(truncatingIfNeeded: next()) }
            guard let reader = try? Ext4Reader(InMemoryImage(bytes)) else { continue }
            _ = InitDiscovery.find(in: reader, initParameter: nil)
            _ = try? reader.lookup("/sbin/init").map { try reader.read($0, maxBytes: 1 << 20) }
        }
    }
}
