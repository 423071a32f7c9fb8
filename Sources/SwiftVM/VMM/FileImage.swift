import Glibc
import SwiftVMHost
import SwiftVMMemory

/// What an input path may name. Anything else (a directory, a named FIFO, a
/// character device, a socket) is refused with a message that says what the
/// path is, before a byte is read.
public struct InputFileKinds: OptionSet, Sendable {
    public let rawValue: Int
    public init(rawValue: Int) { self.rawValue = rawValue }

    /// A regular file.
    public static let regularFile = InputFileKinds(rawValue: 1 << 0)
    /// A block device (a drive's backing device, a root file system on a partition).
    public static let blockDevice = InputFileKinds(rawValue: 1 << 1)
    /// An anonymous pipe (`<(zcat /proc/config.gz)`, a piped standard input),
    /// read to its end by ``FileImage/readAll(limit:)``. A named FIFO is never
    /// accepted: opening one waits for a writer that may never come.
    public static let pipe = InputFileKinds(rawValue: 1 << 2)
}

/// The one way the VMM opens a file it reads as input: the kernel, the
/// initrd, a CPU template, a drive's image, a file given to `inspect` or
/// `check-config`.
///
/// The open never blocks: it is made with `O_NONBLOCK`, so a named FIFO
/// without a writer (which a plain `open` waits on forever) opens at once;
/// `fstat` then says what the path is, and anything `accepting` does not list
/// is refused. Only then is `O_NONBLOCK` cleared, so that reads and io_uring
/// requests on the file wait for their data as usual.
enum InputFile {
    /// Opens `path` with `flags` (`O_RDONLY` or `O_RDWR`). `subject` names
    /// the input in messages ("the kernel /boot/vmlinux", "drive data (/img)");
    /// `accessHint` is added when the open is refused for permissions.
    static func open(
        _ path: String, flags: Int32, subject: String, accepting kinds: InputFileKinds, accessHint: String? = nil
    ) throws(VMMError) -> FileDescriptor {
        let fd: FileDescriptor
        do { fd = try FileDescriptor.open(path, flags: flags | O_NONBLOCK | O_NOCTTY) } catch {
            var message = "cannot open \(subject): \(String(cString: strerror(error.errno)))"
            if let accessHint, [EACCES, EPERM, EROFS].contains(error.errno) { message += "; " + accessHint }
            throw VMMError(openFailureKind(errno: error.errno, path: path), message)
        }
        var info = stat()
        guard fstat(fd.rawValue, &info) == 0 else {
            throw VMMError(.missingFile(path: path), "cannot read \(subject): fstat: \(String(cString: strerror(errno)))")
        }
        let type = info.st_mode & S_IFMT
        let accepted: Bool
        switch type {
        case S_IFREG: accepted = kinds.contains(.regularFile)
        case S_IFBLK: accepted = kinds.contains(.blockDevice)
        case S_IFIFO: accepted = kinds.contains(.pipe) && isAnonymousPipe(fd)
        default: accepted = false
        }
        guard accepted else {
            throw VMMError(.missingFile(path: path), "\(subject) is \(FileType.describe(type)); give \(expected(kinds))")
        }
        // Reads wait for data again; io_uring would otherwise fail them with EAGAIN.
        let fileFlags = fcntl(fd.rawValue, F_GETFL)
        if fileFlags >= 0 { _ = fcntl(fd.rawValue, F_SETFL, fileFlags & ~O_NONBLOCK) }
        return fd
    }

    /// The error kind for an open that failed with `errno`: the host's limits
    /// are its resources (71); anything else means the path does not lead to
    /// a file swiftvm may read (no such file, no permission, a symbolic link
    /// loop, a read-only file system for a writable drive): 66.
    static func openFailureKind(errno: Int32, path: String) -> VMMError.Kind {
        switch errno {
        case EMFILE, ENFILE, ENOMEM: .hostResource
        default: .missingFile(path: path)
        }
    }

    /// What a file of `type` (the `S_IFMT` bits) is, as messages say it.
    /// What the message asks for instead.
    static func expected(_ kinds: InputFileKinds) -> String {
        kinds.contains(.blockDevice) ? "a regular file or a block device" : "a regular file"
    }

    /// A pipe made by pipe(2) (its /proc/self/fd link reads "pipe:[inode]"),
    /// as opposed to a FIFO with a name in the file system.
    private static func isAnonymousPipe(_ fd: FileDescriptor) -> Bool {
        var buffer = [CChar](repeating: 0, count: 64)
        let count = readlink("/proc/self/fd/\(fd.rawValue)", &buffer, buffer.count - 1)
        guard count > 0 else { return false }
        return String(decoding: buffer[..<count].map { UInt8(bitPattern: $0) }, as: UTF8.self).hasPrefix("pipe:")
    }
}

/// An image file read with pread, so loaders copy straight into guest RAM.
public struct FileImage: ImageSource {
    public let path: String
    /// What the file is to swiftvm ("kernel", "initrd"), as errors name it.
    public let role: String
    let fd: FileDescriptor
    public let size: UInt64

    /// Opens `path` for reading; `role` ("kernel", "initrd") names it in errors.
    ///
    /// `accepting` lists what the path may be: a regular file, and by default
    /// an anonymous pipe, which only ``readAll(limit:)`` can read (it has no
    /// size and cannot seek); files read at offsets (a kernel, an initrd) pass
    /// `.regularFile`. A directory, a named FIFO or a device is refused
    /// without blocking (see `InputFile`).
    public init(path: String, role: String, accepting kinds: InputFileKinds = [.regularFile, .pipe]) throws(VMMError) {
        self.path = path
        self.role = role
        fd = try InputFile.open(path, flags: O_RDONLY, subject: "the \(role) \(path)", accepting: kinds)
        do { size = try fd.size() } catch {
            throw VMMError(Self.unusable(role, path), "cannot read the size of the \(role) \(path): \(error)")
        }
    }

    /// The error kind for a file of `role` that exists but cannot be used.
    static func unusable(_ role: String, _ path: String) -> VMMError.Kind {
        switch role {
        case "kernel": .badKernel(path: path)
        case "initrd": .badInitrd(path: path)
        case "cpu template": .badCPUTemplate(path: path)
        default: .badInput
        }
    }

    public func read(at offset: UInt64, into buffer: UnsafeMutableRawBufferPointer) throws(ImageReadError) {
        let got: Int
        do { got = try fd.pread(into: buffer, at: offset) } catch {
            throw ImageReadError(offset: offset, length: buffer.count, reason: String(cString: strerror(error.errno)))
        }
        if got < buffer.count { throw ImageReadError(offset: offset, length: buffer.count) }
    }

    /// The whole file, from its first byte to its end. A file of more than
    /// `limit` bytes is refused with an error rather than read in part.
    ///
    /// Reads until end of file instead of trusting `size`, which is 0 for a
    /// pipe (`<(zcat /proc/config.gz)`) or a /proc file that still has bytes.
    public func readAll(limit: Int) throws(VMMError) -> [UInt8] {
        if size > UInt64(limit) { throw tooLarge(limit: limit, size: size) }
        // Start over at byte 0; a pipe cannot seek, and starts where it is.
        _ = lseek(fd.rawValue, 0, SEEK_SET)
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 1 << 16)
        while true {
            var got = 0
            var failure: SystemError?
            chunk.withUnsafeMutableBytes { buffer in
                do throws(SystemError) { got = try fd.read(into: buffer) } catch { failure = error }
            }
            if let failure {
                throw VMMError(.missingFile(path: path), "cannot read the \(role) \(path): \(String(cString: strerror(failure.errno)))")
            }
            if got == 0 { return bytes }
            if bytes.count + got > limit { throw tooLarge(limit: limit, size: nil) }
            bytes += chunk[..<got]
        }
    }

    private func tooLarge(limit: Int, size: UInt64?) -> VMMError {
        let limitText = limit % (1 << 20) == 0 ? "\(limit >> 20) MiB" : "\(limit) bytes"
        let sizeText = size.map { "is \($0) bytes" } ?? "holds more than \(limitText)"
        return VMMError(
            .badInput,
            "the \(role) \(path) \(sizeText); swiftvm reads at most \(limitText) of a \(role) and does not cut one short"
                + " (is this the right file?)")
    }
}
