import Glibc
internal import CSwiftVM

/// An open file descriptor that is closed when the last reference goes away.
public final class FileDescriptor: Sendable {
    public let rawValue: Int32

    /// Takes ownership of `rawValue`.
    public init(owning rawValue: Int32) { self.rawValue = rawValue }

    deinit { close(rawValue) }

    /// Opens `path` with `flags` (O_CLOEXEC is always added).
    public static func open(_ path: String, flags: Int32, mode: UInt32 = 0o644) throws(SystemError) -> FileDescriptor {
        let fd = try sys("open \(path)") { Glibc.open(path, flags | O_CLOEXEC, mode_t(mode)) }
        return FileDescriptor(owning: fd)
    }

    /// Reads up to `buffer.count` bytes; returns 0 at end of file.
    public func read(into buffer: UnsafeMutableRawBufferPointer) throws(SystemError) -> Int {
        try sys("read") { Glibc.read(rawValue, buffer.baseAddress, buffer.count) }
    }

    /// Reads `buffer.count` bytes at `offset`, retrying short reads; returns
    /// fewer only when the file ends first.
    public func pread(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64) throws(SystemError) -> Int {
        guard let base = buffer.baseAddress else { return 0 }
        var done = 0
        while done < buffer.count {
            let count = try sys("pread") {
                Glibc.pread(rawValue, base + done, buffer.count - done, off_t(offset) + off_t(done))
            }
            if count == 0 { break }
            done += count
        }
        return done
    }

    /// Writes all of `bytes` at `offset`, retrying short writes.
    public func pwriteAll(_ bytes: UnsafeRawBufferPointer, at offset: UInt64) throws(SystemError) {
        guard let base = bytes.baseAddress else { return }
        var done = 0
        while done < bytes.count {
            done += try sys("pwrite") { Glibc.pwrite(rawValue, base + done, bytes.count - done, off_t(offset) + off_t(done)) }
        }
    }

    /// Flushes the file's data and metadata to its storage (fsync).
    public func sync() throws(SystemError) {
        _ = try sys("fsync") { fsync(rawValue) }
    }

    /// Takes an advisory lock on the whole file (flock), shared or exclusive,
    /// without waiting. Throws EWOULDBLOCK when another process holds a conflicting lock.
    public func lock(exclusive: Bool) throws(SystemError) {
        _ = try sys("flock") { flock(rawValue, (exclusive ? LOCK_EX : LOCK_SH) | LOCK_NB) }
    }

    /// Writes all of `bytes`, retrying short writes.
    public func writeAll(_ bytes: UnsafeRawBufferPointer) throws(SystemError) {
        guard let base = bytes.baseAddress else { return }
        var done = 0
        while done < bytes.count {
            done += try sys("write") { Glibc.write(rawValue, base + done, bytes.count - done) }
        }
    }

    /// The file's size from fstat.
    public func size() throws(SystemError) -> UInt64 {
        var info = stat()
        _ = try sys("fstat") { fstat(rawValue, &info) }
        if (info.st_mode & S_IFMT) == S_IFBLK {
            var bytes: UInt64 = 0
            // BLKGETSIZE64 = _IOR(0x12, 114, size_t)
            _ = try sys("ioctl BLKGETSIZE64") { ioctl(rawValue, 0x8008_1272, &bytes) }
            return bytes
        }
        return UInt64(info.st_size)
    }

    public func isDirectory() -> Bool {
        var info = stat()
        return fstat(rawValue, &info) == 0 && (info.st_mode & S_IFMT) == S_IFDIR
    }
}
