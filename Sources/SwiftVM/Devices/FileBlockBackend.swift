import SwiftVMDevices
import Glibc
import SwiftVMHost

/// A drive backed by a file (or block device), with pread/pwrite on the
/// event-loop thread: the `Sync` io engine.
final class FileBlockBackend: BlockBackend {
    let fd: FileDescriptor
    let size: UInt64

    /// Opens `drive.path` read-write (read-only for a read-only drive) and
    /// locks it, so two VMs cannot write the same image. The path must be a
    /// regular file or a block device; it is opened without blocking
    /// (`InputFile`), so a FIFO is refused rather than waited on.
    init(drive: DriveConfig) throws(VMMError) {
        fd = try InputFile.open(
            drive.path, flags: drive.readOnly ? O_RDONLY : O_RDWR, subject: "drive \(drive.id) (\(drive.path))",
            accepting: [.regularFile, .blockDevice],
            accessHint: drive.readOnly ? "fix its permissions" : "attach it read-only (ro) or fix its permissions")
        do { size = try fd.size() } catch { throw VMMError(.badDrive(id: drive.id), "drive \(drive.id): \(error)") }
        do { try fd.lock(exclusive: !drive.readOnly) } catch {
            throw VMMError(.driveBusy(id: drive.id), "drive \(drive.id): \(drive.path) is in use by another process (it holds a lock on it); "
                + "a disk image written by two VMs at once is corrupted")
        }
    }

    func read(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64) throws {
        let got = try fd.pread(into: buffer, at: offset)
        if got < buffer.count { throw SystemError("pread: short read at \(offset)", errno: EIO) }
    }

    func write(from buffer: UnsafeRawBufferPointer, at offset: UInt64) throws {
        try fd.pwriteAll(buffer, at: offset)
    }

    func flush() throws {
        try fd.sync()
    }
}
