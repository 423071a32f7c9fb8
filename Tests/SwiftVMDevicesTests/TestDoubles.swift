import Synchronization
import SwiftVMDevices

/// A sink that keeps every byte written to it.
final class RecordingSink: ByteSink {
    private let storage = Mutex<[UInt8]>([])

    var bytes: [UInt8] { storage.withLock { $0 } }

    func write(_ bytes: UnsafeRawBufferPointer) {
        storage.withLock { $0.append(contentsOf: bytes) }
    }
}

/// An interrupt line that counts its edges.
final class CountingInterruptLine: InterruptLine {
    private let triggers = Atomic<Int>(0)

    var count: Int { triggers.load(ordering: .relaxed) }

    func trigger() {
        triggers.add(1, ordering: .relaxed)
    }
}

/// Counts calls of a `@Sendable` callback and remembers their arguments.
final class CallRecorder<Argument: Sendable>: Sendable {
    private let calls = Mutex<[Argument]>([])

    var arguments: [Argument] { calls.withLock { $0 } }
    var count: Int { calls.withLock { $0.count } }

    func record(_ argument: Argument) {
        calls.withLock { $0.append(argument) }
    }
}

extension BusDevice {
    /// Performs a one-byte read, as an `inb` would.
    func readByte(_ offset: UInt64) -> UInt8 {
        var value: UInt8 = 0
        withUnsafeMutableBytes(of: &value) { read(offset: offset, into: $0) }
        return value
    }

    /// Performs a one-byte write, as an `outb` would.
    func writeByte(_ offset: UInt64, _ value: UInt8) {
        withUnsafeBytes(of: value) { write(offset: offset, from: $0) }
    }
}
