import Synchronization
import SwiftVMMemory

/// A virtio entropy device (virtio 1.2 §5.4, device ID 4): one queue whose
/// device-writable buffers the device fills with random bytes. It has no
/// device-specific features and no config space.
public final class VirtioRNG: VirtioDevice, DeviceCountersOwner {
    /// What the device counts, for metrics.
    public enum Counter: String, CaseIterable, Sendable {
        case requests, bytes, errors
    }
    public let counters = DeviceCounters(Counter.self)

    /// Fills the buffer with random bytes; returns false if it could not.
    public typealias EntropySource = @Sendable (UnsafeMutableRawBufferPointer) -> Bool

    /// Bytes served per request at most, so one guest request cannot keep the
    /// event loop busy for long.
    public static let maxBytesPerRequest = 64 * 1024
    public static let queueSize: UInt16 = 256

    /// The host's CSPRNG. The standard library's system generator is
    /// `getrandom(2)` on Linux; Glibc's Swift module does not export
    /// `getrandom` itself.
    public static let hostEntropy: EntropySource = { buffer in
        var generator = SystemRandomNumberGenerator()
        var offset = 0
        while offset < buffer.count {
            let word = generator.next()
            let count = min(8, buffer.count - offset)
            withUnsafeBytes(of: word) { bytes in
                UnsafeMutableRawBufferPointer(rebasing: buffer[offset..<(offset + count)])
                    .copyMemory(from: UnsafeRawBufferPointer(rebasing: bytes[0..<count]))
            }
            offset += count
        }
        return true
    }

    private let entropy: EntropySource
    private let activation = Mutex<VirtioActivation?>(nil)

    public init(entropy: @escaping EntropySource = VirtioRNG.hostEntropy) {
        self.entropy = entropy
    }

    public var deviceType: UInt32 { VirtioDeviceType.entropy }
    public var offeredFeatures: UInt64 {
        VirtioFeature.version1 | VirtioFeature.eventIndex | VirtioFeature.indirectDescriptors
    }
    public var queueMaxSizes: [UInt16] { [Self.queueSize] }

    public func readConfig(at offset: Int, into data: UnsafeMutableRawBufferPointer) {
        data.initializeMemory(as: UInt8.self, repeating: 0)
    }

    public func writeConfig(at offset: Int, from data: UnsafeRawBufferPointer) {
        Log.warning("virtio-rng: write to config space at 0x\(String(offset, radix: 16)) ignored; it has none")
    }

    public func activate(_ activation: VirtioActivation) {
        self.activation.withLock { $0 = activation }
    }

    public func reset() {
        activation.withLock { $0 = nil }
    }

    @discardableResult
    public func process(queue index: Int) -> Bool {
        guard let activation = activation.withLock({ $0 }) else { return false }
        return activation.serve(queue: index) { chain in fill(chain, memory: activation.memory) }
    }

    /// Fills the chain's writable buffers, up to ``maxBytesPerRequest`` in
    /// all; readable buffers carry nothing for this device and are skipped.
    private func fill(_ chain: DescriptorChain, memory: GuestMemory) -> UInt32 {
        var cursor = GuestBufferCursor(memory: memory, buffers: chain.writable)
        var written = 0
        while written < Self.maxBytesPerRequest {
            let segment: UnsafeMutableRawBufferPointer
            do {
                guard let next = try cursor.nextSegment(limit: UInt64(Self.maxBytesPerRequest - written)) else { break }
                segment = next
            } catch {
                Log.warning("virtio-rng: \(error)")
                break
            }
            guard entropy(segment) else {
                Log.warning("virtio-rng: the entropy source failed; request \(chain.head) gets \(written) bytes")
                counters.add(Counter.errors)
                break
            }
            written += segment.count
        }
        counters.add(Counter.requests)
        counters.add(Counter.bytes, UInt64(written))
        return UInt32(written)
    }
}
