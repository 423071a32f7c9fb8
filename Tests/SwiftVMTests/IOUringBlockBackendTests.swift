import Glibc
import SwiftVMDevices
import SwiftVMHost
import Testing
@testable import SwiftVM

/// Whether this host's kernel sets up an io_uring for this process, and if not, why.
enum IOUringHost {
    static let refusal: SystemError? = probe()

    private static func probe() -> SystemError? {
        do {
            _ = try IOUring(entries: 1)
            return nil
        } catch {
            return error
        }
    }
    static var available: Bool { refusal == nil }
    static var reason: Comment {
        "io_uring is unavailable on this host (\(refusal.map { "\($0)" } ?? "")); the Async engine cannot be tested"
    }
}

/// The two io engines, opened the way `Machine.openDrives` opens them.
enum Engine: String, CaseIterable, CustomTestStringConvertible {
    case sync = "Sync"
    case async = "Async"

    var testDescription: String { rawValue }

    func open(_ drive: DriveConfig) throws(VMMError) -> any BlockBackend {
        switch self {
        case .sync: try FileBlockBackend(drive: drive)
        case .async: try Machine.openAsyncBackend(drive)
        }
    }

    /// The descriptor the backend does its I/O on.
    func descriptor(of backend: any BlockBackend) -> FileDescriptor? {
        (backend as? FileBlockBackend)?.fd ?? (backend as? IOUringBlockBackend)?.file.fd
    }
}

/// A disk image in /tmp holding `bytes`, removed when the value goes away.
final class TemporaryImage {
    let path: String

    init(_ bytes: [UInt8]) throws {
        var template = Array("/tmp/swiftvm-drive-XXXXXX".utf8CString)
        let fd = mkstemp(&template)
        try #require(fd >= 0, "mkstemp: \(String(cString: strerror(errno)))")
        path = String(decoding: template.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        let file = FileDescriptor(owning: fd)
        try bytes.withUnsafeBytes { try file.pwriteAll($0, at: 0) }
    }

    deinit { unlink(path) }

    /// The file's bytes, read without any backend.
    func contents() throws -> [UInt8] {
        let file = try FileDescriptor.open(path, flags: O_RDONLY)
        var bytes = [UInt8](repeating: 0, count: Int(try file.size()))
        let count = try bytes.withUnsafeMutableBytes { try file.pread(into: $0, at: 0) }
        #expect(count == bytes.count)
        return bytes
    }
}

private func read(_ backend: any BlockBackend, _ count: Int, at offset: UInt64) throws -> [UInt8] {
    var bytes = [UInt8](repeating: 0xee, count: count)
    try bytes.withUnsafeMutableBytes { try backend.read(into: $0, at: offset) }
    return bytes
}

private func write(_ backend: any BlockBackend, _ bytes: [UInt8], at offset: UInt64) throws {
    try bytes.withUnsafeBytes { try backend.write(from: $0, at: offset) }
}

@Suite("Block drive io engines: Sync (pread/pwrite) and Async (io_uring)")
struct IOUringBlockBackendTests {
    static let imageSize = 64 * 1024

    // The engine tests compare both engines on the same images, so they need io_uring.
    @Test("reads return the image's bytes and writes land in the file", .enabled(if: IOUringHost.available, IOUringHost.reason),
          arguments: Engine.allCases)
    func readWriteRoundTrip(engine: Engine) throws {
        let original = TestImages.pattern(sectors: Self.imageSize / 512)
        let image = try TemporaryImage(original)
        let backend = try engine.open(DriveConfig(id: "data", path: image.path))
        #expect(backend.size == UInt64(Self.imageSize))

        #expect(try read(backend, 512, at: 0) == Array(original[0..<512]))
        #expect(try read(backend, 4096 * 3, at: 8192) == Array(original[8192..<(8192 + 4096 * 3)]))
        #expect(try read(backend, 512, at: UInt64(Self.imageSize - 512)) == Array(original[(Self.imageSize - 512)...]))

        // A multi-sector write at an unaligned length, then a read of it through the backend and of the file itself.
        // The pattern from sector 0 again, written at sector 8: every byte differs from the one it replaces.
        let update = Array(TestImages.pattern(sectors: 25).prefix(3 * 4096 + 17))
        try write(backend, update, at: 4096)
        try backend.flush()
        var expected = original
        expected.replaceSubrange(4096..<(4096 + update.count), with: update)
        #expect(try read(backend, update.count, at: 4096) == update)
        #expect(try image.contents() == expected)
    }

    @Test("what one engine writes the other reads back, after a flush", .enabled(if: IOUringHost.available, IOUringHost.reason),
          arguments: [(Engine.sync, Engine.async), (Engine.async, Engine.sync)])
    func enginesAgree(writer: Engine, reader: Engine) throws {
        let image = try TemporaryImage([UInt8](repeating: 0, count: Self.imageSize))
        let update = TestImages.pattern(sectors: 16)
        do {
            let backend = try writer.open(DriveConfig(id: "data", path: image.path))
            try write(backend, update, at: 16384)
            try backend.flush()
        }  // closing the writer releases its lock
        let backend = try reader.open(DriveConfig(id: "data", path: image.path))
        #expect(try read(backend, update.count, at: 16384) == update)
        #expect(try read(backend, 512, at: 0) == [UInt8](repeating: 0, count: 512))
    }

    @Test("a read past the end of the image fails with EIO instead of returning stale bytes",
          .enabled(if: IOUringHost.available, IOUringHost.reason), arguments: Engine.allCases)
    func readPastEnd(engine: Engine) throws {
        let image = try TemporaryImage(TestImages.pattern(sectors: Self.imageSize / 512))
        let backend = try engine.open(DriveConfig(id: "data", path: image.path))
        for offset in [UInt64(Self.imageSize - 512), UInt64(Self.imageSize), UInt64(Self.imageSize) * 4] {
            let error = #expect(throws: SystemError.self) { try read(backend, 1024, at: offset) }
            #expect(error?.errno == EIO)
        }
    }

    @Test("a read-only drive is opened O_RDONLY and refuses writes, leaving the file as it was",
          .enabled(if: IOUringHost.available, IOUringHost.reason), arguments: Engine.allCases)
    func readOnlyDrive(engine: Engine) throws {
        let original = TestImages.pattern(sectors: Self.imageSize / 512)
        let image = try TemporaryImage(original)
        let backend = try engine.open(DriveConfig(id: "data", path: image.path, readOnly: true))
        let fd = try #require(engine.descriptor(of: backend))
        #expect(fcntl(fd.rawValue, F_GETFL) & O_ACCMODE == O_RDONLY)
        #expect(try read(backend, 512, at: 512) == Array(original[512..<1024]))
        let error = #expect(throws: SystemError.self) { try write(backend, [1, 2, 3, 4], at: 0) }
        #expect(error?.errno == EBADF)
        #expect(try image.contents() == original)
    }

    @Test("a second writer is refused while a drive is open, and read-only drives share it",
          .enabled(if: IOUringHost.available, IOUringHost.reason), arguments: Engine.allCases)
    func lockRefusesSecondWriter(engine: Engine) throws {
        let image = try TemporaryImage(TestImages.pattern(sectors: Self.imageSize / 512))
        do {
            let first = try engine.open(DriveConfig(id: "first", path: image.path))
            for other in Engine.allCases {
                for readOnly in [false, true] {
                    let error = #expect(throws: VMMError.self) {
                        try other.open(DriveConfig(id: "second", path: image.path, readOnly: readOnly))
                    }
                    #expect(error?.kind == .driveBusy(id: "second"))
                    #expect(error?.message == "drive second: \(image.path) is in use by another process (it holds a lock on it); "
                        + "a disk image written by two VMs at once is corrupted")
                }
            }
            _ = first
        }
        let readers = try Engine.allCases.map { try $0.open(DriveConfig(id: "ro", path: image.path, readOnly: true)) }
        #expect(readers.count == 2)
        #expect(throws: VMMError.self) { try engine.open(DriveConfig(id: "rw", path: image.path)) }
    }

    @Test("a missing image gets the same error from both engines", arguments: Engine.allCases)
    func missingImage(engine: Engine) {
        let error = #expect(throws: VMMError.self) { try engine.open(DriveConfig(id: "data", path: "/nonexistent/disk.ext4")) }
        #expect(error?.kind == .missingFile(path: "/nonexistent/disk.ext4"))
        #expect(error?.message == "cannot open drive data (/nonexistent/disk.ext4): No such file or directory")
    }
}

@Suite("The Async engine on a host that refuses io_uring")
struct AsyncEngineUnavailableTests {
    @Test("a ring the kernel will not set up is a usage error naming the cause and engine=sync, and the drive is left unlocked")
    func ringSetUpFails() throws {
        let image = try TemporaryImage([UInt8](repeating: 0, count: 4096))
        let drive = DriveConfig(id: "rootfs", path: image.path, ioEngine: .async)
        // More entries than io_uring allows (32768) make io_uring_queue_init fail.
        let error = #expect(throws: VMMError.self) { try Machine.openAsyncBackend(drive, ringEntries: 1 << 20) }
        #expect(error?.kind == .usage)
        if IOUringHost.available {
            #expect(error?.message == "drive rootfs: engine=async needs io_uring, but the host could not set up its ring "
                + "(io_uring_queue_init: Invalid argument (EINVAL)); use engine=sync")
        } else {
            #expect(error?.message.hasPrefix("drive rootfs: engine=async needs io_uring, ") == true)
            #expect(error?.message.hasSuffix("engine=sync") == true)
        }
        // The file was opened and locked before the ring failed; the lock went with it.
        _ = try FileBlockBackend(drive: drive)
    }

    @Test("kernel.io_uring_disabled (EPERM) is named with the sysctl to check")
    func disabledBySysctl() {
        let error = Machine.asyncEngineUnavailable(
            DriveConfig(id: "rootfs", path: "/images/rootfs.ext4", ioEngine: .async),
            SystemError("io_uring_queue_init", errno: EPERM))
        #expect(error.kind == .usage)
        #expect(error.message == "drive rootfs: engine=async needs io_uring, which this host's kernel refused "
            + "(io_uring_queue_init: Operation not permitted (EPERM)); check `sysctl kernel.io_uring_disabled` or use engine=sync")
    }

    @Test("a kernel without io_uring (ENOSYS) is told the version it needs")
    func kernelWithoutIOUring() {
        let error = Machine.asyncEngineUnavailable(
            DriveConfig(id: "data", path: "/images/data.img", ioEngine: .async),
            SystemError("io_uring_queue_init", errno: ENOSYS))
        #expect(error.kind == .usage)
        #expect(error.message == "drive data: engine=async needs io_uring, which this host's kernel does not provide "
            + "(io_uring_queue_init: Function not implemented (ENOSYS)); it needs Linux 5.10.51 or later built with "
            + "CONFIG_IO_URING, or use engine=sync")
    }

    @Test("a locked-memory limit too small for the ring (ENOMEM) points at ulimit -l")
    func memlockLimit() {
        let error = Machine.asyncEngineUnavailable(
            DriveConfig(id: "data", path: "/images/data.img", ioEngine: .async),
            SystemError("io_uring_queue_init", errno: ENOMEM))
        #expect(error.message.contains("(io_uring_queue_init: Cannot allocate memory (ENOMEM))"))
        #expect(error.message.hasSuffix("raise the locked-memory limit (ulimit -l) or use engine=sync"))
    }
}

@Suite("IOUring", .enabled(if: IOUringHost.available, IOUringHost.reason))
struct IOUringTests {
    @Test("a read that reaches the end of the file returns the bytes that exist, then 0")
    func readAtEndOfFile() throws {
        let bytes = Array(TestImages.pattern(sectors: 20).prefix(10_000))
        let image = try TemporaryImage(bytes)
        let file = try FileDescriptor.open(image.path, flags: O_RDONLY)
        let ring = try IOUring(entries: 4)
        var buffer = [UInt8](repeating: 0, count: 8192)
        let tail = try buffer.withUnsafeMutableBytes { try ring.read(file, into: $0, at: 9_000) }
        #expect(tail == 1_000)
        #expect(Array(buffer[..<1_000]) == Array(bytes[9_000...]))
        #expect(try buffer.withUnsafeMutableBytes { try ring.read(file, into: $0, at: 10_000) } == 0)
    }

    @Test("an operation the kernel rejects throws its errno from the completion")
    func completionErrno() throws {
        let image = try TemporaryImage([0])
        let file = try FileDescriptor.open(image.path, flags: O_RDONLY)
        let ring = try IOUring(entries: 4)
        let error = #expect(throws: SystemError.self) { try [UInt8](repeating: 1, count: 8).withUnsafeBytes { try ring.write(file, from: $0, at: 0) } }
        #expect(error == SystemError("io_uring write", errno: EBADF))
        // The ring is still usable after a failed operation.
        try ring.fsync(file)
    }
}

@Suite("The Async engine with operations in flight", .enabled(if: IOUringHost.available, IOUringHost.reason))
struct IOUringAsyncTests {
    /// Reaps until `count` completions arrived, waiting on the completion eventfd.
    static func collect(_ backend: any AsyncBlockBackend, _ count: Int) throws -> [UInt64: Int] {
        var results: [UInt64: Int] = [:]
        let deadline = ContinuousClock.now + .seconds(10)
        while results.count < count {
            try #require(ContinuousClock.now < deadline, "only \(results.count) of \(count) completions")
            var pollFD = pollfd(fd: try #require(backend.completionDescriptor), events: Int16(POLLIN), revents: 0)
            _ = poll(&pollFD, 1, 100)
            backend.reap { results[$0] = $1 }
        }
        return results
    }

    @Test("vectored reads and writes run together, each completion carries its tag, and the eventfd reports them")
    func manyInFlight() throws {
        let original = TestImages.pattern(sectors: 128)
        let image = try TemporaryImage(original)
        let backend = try #require(try Machine.openAsyncBackend(DriveConfig(id: "data", path: image.path)) as? any AsyncBlockBackend)
        #expect(backend.maxInFlight == Int(VirtioBlock.queueSize))

        // Eight reads of 4 KiB, each split over two segments, and one write.
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 8 * 4096 + 512, alignment: 4096)
        defer { buffer.deallocate() }
        buffer.initializeMemory(as: UInt8.self, repeating: 0xee)
        for i in 0..<8 {
            let base = i * 4096
            let segments = [
                UnsafeMutableRawBufferPointer(rebasing: buffer[base..<(base + 1000)]),
                UnsafeMutableRawBufferPointer(rebasing: buffer[(base + 1000)..<(base + 4096)]),
            ]
            #expect(backend.enqueue(BlockOperation(kind: .read, offset: UInt64((7 - i) * 4096), segments: segments), tag: UInt64(i)))
        }
        let source = UnsafeMutableRawBufferPointer(rebasing: buffer[(8 * 4096)...])
        source.initializeMemory(as: UInt8.self, repeating: 0x5a)
        #expect(backend.enqueue(BlockOperation(kind: .write, offset: 60 * 512, segments: [source]), tag: 100))
        backend.submitQueued()
        let results = try Self.collect(backend, 9)
        #expect(results == Dictionary(uniqueKeysWithValues: (0..<8).map { (UInt64($0), 4096) } + [(100, 512)]))
        for i in 0..<8 {
            let from = (7 - i) * 4096
            #expect(Array(UnsafeRawBufferPointer(rebasing: buffer[(i * 4096)..<((i + 1) * 4096)])) == Array(original[from..<(from + 4096)]))
        }

        // A flush after the write completed; then the file holds the write.
        #expect(backend.enqueue(BlockOperation(kind: .flush), tag: 200))
        backend.submitQueued()
        #expect(try Self.collect(backend, 1) == [200: 0])
        var expected = original
        expected.replaceSubrange((60 * 512)..<(61 * 512), with: [UInt8](repeating: 0x5a, count: 512))
        #expect(try image.contents() == expected)
        #expect(backend.waitForIdle(timeoutNanoseconds: 1_000_000_000))
    }

    @Test("a read past the end of the file completes short, so the device can continue or fail it")
    func shortRead() throws {
        let image = try TemporaryImage(TestImages.pattern(sectors: 8))
        let backend = try #require(try Machine.openAsyncBackend(DriveConfig(id: "data", path: image.path)) as? any AsyncBlockBackend)
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 2048, alignment: 512)
        defer { buffer.deallocate() }
        #expect(backend.enqueue(BlockOperation(kind: .read, offset: 7 * 512, segments: [buffer]), tag: 1))
        backend.submitQueued()
        #expect(try Self.collect(backend, 1) == [1: 512])
    }
}
