import Glibc
import SwiftVMHost
import SwiftVMMemory

/// An image file read with pread, so loaders copy straight into guest RAM.
public struct FileImage: ImageSource {
    public let path: String
    let fd: FileDescriptor
    public let size: UInt64

    /// Opens `path` for reading; `role` ("kernel", "initrd") names it in errors.
    public init(path: String, role: String) throws(VMMError) {
        self.path = path
        do {
            fd = try FileDescriptor.open(path, flags: O_RDONLY)
        } catch {
            let reason = String(cString: strerror(error.errno))
            let kind: VMMError.Kind = error.errno == ENOENT || error.errno == EACCES ? .missingInput : .badInput
            throw VMMError(kind, "cannot open the \(role) \(path): \(reason)")
        }
        if fd.isDirectory() {
            throw VMMError(.badInput, "the \(role) \(path) is a directory; give the path of the \(role) file")
        }
        do { size = try fd.size() } catch {
            throw VMMError(.badInput, "cannot read the size of the \(role) \(path): \(error)")
        }
    }

    public func read(at offset: UInt64, into buffer: UnsafeMutableRawBufferPointer) throws(ImageReadError) {
        let got: Int
        do { got = try fd.pread(into: buffer, at: offset) } catch {
            throw ImageReadError(offset: offset, length: buffer.count, reason: String(cString: strerror(error.errno)))
        }
        if got < buffer.count { throw ImageReadError(offset: offset, length: buffer.count) }
    }
}
