import Glibc
import SwiftVMHost
import SwiftVMMemory

/// An image file read with pread, so loaders copy straight into guest RAM.
public struct FileImage: ImageSource {
    public let path: String
    /// What the file is to swiftvm ("kernel", "initrd"), as errors name it.
    public let role: String
    let fd: FileDescriptor
    public let size: UInt64

    /// Opens `path` for reading; `role` ("kernel", "initrd") names it in errors.
    public init(path: String, role: String) throws(VMMError) {
        self.path = path
        self.role = role
        do {
            fd = try FileDescriptor.open(path, flags: O_RDONLY)
        } catch {
            let reason = String(cString: strerror(error.errno))
            let kind: VMMError.Kind = error.errno == ENOENT || error.errno == EACCES ? .missingFile(path: path) : Self.unusable(role, path)
            throw VMMError(kind, "cannot open the \(role) \(path): \(reason)")
        }
        if fd.isDirectory() {
            throw VMMError(Self.unusable(role, path), "the \(role) \(path) is a directory; give the path of the \(role) file")
        }
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
                throw VMMError(.badInput, "cannot read the \(role) \(path): \(String(cString: strerror(failure.errno)))")
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
