import SwiftVMDevices

/// A device whose rate limiter can change while the VM runs.
public enum RateLimitedDevice: Sendable, Hashable, CustomStringConvertible {
    /// The virtio-block drive with this id.
    case drive(String)
    /// What the network interface with this id receives.
    case netReceive(String)
    /// What the network interface with this id sends.
    case netTransmit(String)
    /// The entropy device.
    case entropy

    public var description: String {
        switch self {
        case .drive(let id): "drive \(id)"
        case .netReceive(let id): "network interface \(id) (receive)"
        case .netTransmit(let id): "network interface \(id) (transmit)"
        case .entropy: "the entropy device"
        }
    }
}

/// A change to a running device's rate limiter, bucket by bucket.
public struct RateLimiterUpdate: Sendable, Equatable {
    /// `unchanged` (tokens and all), `disabled`, or `set` to a new, full
    /// bucket; one that limits nothing (no size or no refill time) disables
    /// the limit.
    public typealias Bucket = RateLimiter.BucketUpdate

    public var bandwidth: Bucket
    public var ops: Bucket

    public init(bandwidth: Bucket = .unchanged, ops: Bucket = .unchanged) {
        self.bandwidth = bandwidth
        self.ops = ops
    }

    /// Firecracker's `PATCH` rule: a bucket the patch gives replaces the
    /// device's (size or refill_time 0 turns it off); a bucket it leaves out,
    /// or no patch, leaves the device's as it is.
    public init(patch: RateLimiterConfig?) {
        func bucket(_ config: TokenBucketConfig?) -> Bucket {
            guard let config else { return .unchanged }
            return config.limits ? .set(config) : .disabled
        }
        self.init(bandwidth: bucket(patch?.bandwidth), ops: bucket(patch?.ops))
    }
}

extension MicroVM {
    /// Changes a device's rate limiter, before or while the guest runs
    /// (Firecracker's `PATCH /drives/{id}` and `PATCH /network-interfaces/{id}`):
    /// new buckets start full, and a queue held back by the old limiter goes
    /// on at once. Safe from any thread; the device applies it under its lock
    /// and resumes on the event loop.
    public func updateRateLimiter(_ device: RateLimitedDevice, _ update: RateLimiterUpdate) throws(VMMError) {
        let bandwidth = update.bandwidth
        let ops = update.ops
        for endpoint in machine.devices.virtio {
            switch (device, endpoint.transport.device) {
            case (.drive(let id), let block as VirtioBlock) where block.config.id == id:
                block.updateRateLimiter(bandwidth: bandwidth, ops: ops)
                return
            case (.netReceive(let id), let net as VirtioNet) where net.id == id:
                net.updateRateLimiter(.receive, bandwidth: bandwidth, ops: ops)
                return
            case (.netTransmit(let id), let net as VirtioNet) where net.id == id:
                net.updateRateLimiter(.transmit, bandwidth: bandwidth, ops: ops)
                return
            case (.entropy, let rng as VirtioRNG):
                rng.updateRateLimiter(bandwidth: bandwidth, ops: ops)
                return
            default:
                continue
            }
        }
        throw VMMError(.usage, "the VM has no \(device), so its rate limiter cannot change")
    }
}
