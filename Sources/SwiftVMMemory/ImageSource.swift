/// Random-access bytes of an image file (a kernel, an initrd).
///
/// Loaders read headers and segments through this, so the VMM can `pread`
/// straight from the file into guest RAM while tests use an in-memory array.
public protocol ImageSource {
    /// Total size in bytes.
    var size: UInt64 { get }
    /// Fills `buffer` with the bytes at `offset`. Reading past `size` is an error.
    func read(at offset: UInt64, into buffer: UnsafeMutableRawBufferPointer) throws(ImageReadError)
}

/// A read from an image failed or went past its end.
public struct ImageReadError: Error, Equatable, Sendable, CustomStringConvertible {
    public var offset: UInt64
    public var length: Int
    /// Why the read failed; nil when it ran past the end of the image.
    public var reason: String?

    public init(offset: UInt64, length: Int, reason: String? = nil) {
        self.offset = offset
        self.length = length
        self.reason = reason
    }

    public var description: String {
        if let reason { return "cannot read \(length) bytes at offset \(offset): \(reason)" }
        return "the file ends before offset \(offset + UInt64(length)) (it is truncated)"
    }
}

extension ImageSource {
    /// Reads `count` bytes at `offset` into a new array.
    public func bytes(at offset: UInt64, count: Int) throws(ImageReadError) -> [UInt8] {
        // Checked before the array is allocated: counts often come from the
        // image's own headers, and a damaged one can ask for gigabytes.
        guard count >= 0, offset <= size, UInt64(count) <= size - offset else {
            throw ImageReadError(offset: offset, length: max(count, 0))
        }
        var result = [UInt8](repeating: 0, count: count)
        var failure: ImageReadError?
        result.withUnsafeMutableBytes { buffer in
            do throws(ImageReadError) { try read(at: offset, into: buffer) } catch { failure = error }
        }
        if let failure { throw failure }
        return result
    }
}

/// An image held in memory (tests, small generated images).
public struct InMemoryImage: ImageSource, Sendable {
    public let data: [UInt8]

    public init(_ data: [UInt8]) { self.data = data }

    public var size: UInt64 { UInt64(data.count) }

    public func read(at offset: UInt64, into buffer: UnsafeMutableRawBufferPointer) throws(ImageReadError) {
        let end = offset.addingReportingOverflow(UInt64(buffer.count))
        guard !end.overflow, end.partialValue <= size else {
            throw ImageReadError(offset: offset, length: buffer.count)
        }
        data.withUnsafeBytes { source in
            let start = Int(offset)
            buffer.copyMemory(from: UnsafeRawBufferPointer(rebasing: source[start..<start + buffer.count]))
        }
    }
}
