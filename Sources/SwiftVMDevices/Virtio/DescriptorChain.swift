import SwiftVMMemory

/// One buffer of a descriptor chain, already checked to lie inside guest RAM.
public struct GuestBuffer: Sendable, Hashable {
    public let address: GuestAddress
    public let length: UInt32
    /// Device-writable (VIRTQ_DESC_F_WRITE); otherwise device-readable.
    public let isWritable: Bool

    public init(address: GuestAddress, length: UInt32, isWritable: Bool) {
        self.address = address
        self.length = length
        self.isWritable = isWritable
    }
}

/// A request the driver made available: the head descriptor index, which the
/// device hands back in the used ring, and the buffers of the chain in order,
/// indirect tables flattened.
///
/// ``SplitQueue`` only returns chains that passed every check (§2.7.5): all
/// readable buffers come before all writable ones, each buffer lies inside
/// guest RAM, and the walk was finite. The buffers' contents remain shared
/// with the guest and may change at any time.
public struct DescriptorChain: Sendable, Sequence {
    public let head: UInt16
    public let buffers: [GuestBuffer]

    public init(head: UInt16, buffers: [GuestBuffer]) {
        self.head = head
        self.buffers = buffers
    }

    public func makeIterator() -> IndexingIterator<[GuestBuffer]> { buffers.makeIterator() }

    /// The device-readable buffers (the driver's request).
    public var readable: ArraySlice<GuestBuffer> {
        buffers.prefix { !$0.isWritable }
    }

    /// The device-writable buffers (room for the device's reply).
    public var writable: ArraySlice<GuestBuffer> {
        buffers.drop { !$0.isWritable }
    }

    public var readableLength: UInt64 { readable.reduce(0) { $0 + UInt64($1.length) } }
    public var writableLength: UInt64 { writable.reduce(0) { $0 + UInt64($1.length) } }
}

/// Reads or writes a run of guest buffers as one byte stream.
///
/// Virtio does not promise any framing (§2.6.4): a request header may share a
/// descriptor with data, or be split over two. Devices therefore consume
/// chains through a cursor rather than descriptor by descriptor.
public struct GuestBufferCursor {
    private let memory: GuestMemory
    private var buffers: ArraySlice<GuestBuffer>
    private var offsetInFirst: UInt64 = 0
    /// Bytes left in the stream.
    public private(set) var remaining: UInt64

    public init(memory: GuestMemory, buffers: some Collection<GuestBuffer>) {
        self.memory = memory
        self.buffers = ArraySlice(buffers)
        self.remaining = buffers.reduce(0) { $0 + UInt64($1.length) }
    }

    /// The host bytes of the next contiguous piece of the stream, at most
    /// `limit` bytes long, and advances past them. Nil at the end.
    ///
    /// - Throws: ``GuestMemoryError`` if the piece is outside guest RAM (the
    ///   queue checked it already; this is a second line of defence).
    public mutating func nextSegment(limit: UInt64) throws(GuestMemoryError) -> UnsafeMutableRawBufferPointer? {
        while let first = buffers.first, offsetInFirst == UInt64(first.length) {
            buffers.removeFirst()
            offsetInFirst = 0
        }
        guard let first = buffers.first, limit > 0 else { return nil }
        let count = min(UInt64(first.length) - offsetInFirst, limit)
        let address = GuestAddress(first.address.rawValue &+ offsetInFirst)
        let bytes = try memory.checkedBytes(at: address, count: Int(count))
        offsetInFirst += count
        remaining -= count
        return bytes
    }

    /// Copies the next `destination.count` bytes of the stream out of guest
    /// memory; returns how many there were.
    public mutating func read(into destination: UnsafeMutableRawBufferPointer) throws(GuestMemoryError) -> Int {
        var done = 0
        while done < destination.count, let piece = try nextSegment(limit: UInt64(destination.count - done)) {
            UnsafeMutableRawBufferPointer(rebasing: destination[done..<(done + piece.count)])
                .copyMemory(from: UnsafeRawBufferPointer(piece))
            done += piece.count
        }
        return done
    }

    /// Copies `source` into the stream; returns how many bytes fitted.
    public mutating func write(from source: UnsafeRawBufferPointer) throws(GuestMemoryError) -> Int {
        var done = 0
        while done < source.count, let piece = try nextSegment(limit: UInt64(source.count - done)) {
            piece.copyMemory(from: UnsafeRawBufferPointer(rebasing: source[done..<(done + piece.count)]))
            done += piece.count
        }
        return done
    }

    /// Skips `count` bytes; returns how many there were.
    @discardableResult
    public mutating func skip(_ count: UInt64) throws(GuestMemoryError) -> UInt64 {
        var done: UInt64 = 0
        while done < count, let piece = try nextSegment(limit: count - done) {
            done += UInt64(piece.count)
        }
        return done
    }
}
