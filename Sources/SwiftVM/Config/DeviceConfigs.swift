import SwiftVMDevices

/// Splits a CLI device spec (`key=value,flag,...`) into fields and flags,
/// refusing a key given twice and anything not in `keys` or `flags`.
struct DeviceSpec {
    var fields: [String: String] = [:]
    var flags: Set<String> = []
    /// Bare words that are neither a known flag nor key=value (a balloon's size).
    var positional: [String] = []

    init(_ spec: String, option: String, keys: Set<String>, flags knownFlags: Set<String>) throws(VMConfigError) {
        for item in spec.split(separator: ",", omittingEmptySubsequences: true) {
            if let equals = item.firstIndex(of: "=") {
                let key = String(item[..<equals]).lowercased()
                guard keys.contains(key) else {
                    throw .invalid("\(option) \(spec): unknown field \"\(key)\"; expected "
                        + (keys.sorted().map { $0 + "=" } + knownFlags.sorted()).joined(separator: ", "))
                }
                guard fields[key] == nil else { throw .invalid("\(option) \(spec): \(key) is given twice") }
                fields[key] = String(item[item.index(after: equals)...])
            } else if knownFlags.contains(item.lowercased()) {
                flags.insert(item.lowercased())
            } else {
                positional.append(String(item))
            }
        }
    }
}

/// One token bucket of a rate limiter, in the terms of Firecracker's
/// `TokenBucket`: `size` tokens (bytes or operations) at most, refilled from
/// empty to full in `refillTimeMilliseconds`, and `oneTimeBurst` tokens more
/// at the start that are spent first and never refill. A bucket with no size
/// or no refill time limits nothing, as in Firecracker. The devices' own
/// type; the configuration adds the checks and the CLI form.
public typealias TokenBucketConfig = TokenBucket.Configuration

extension TokenBucket.Configuration {
    /// Checks the values; `field` names the bucket in the message.
    public func validate(_ field: String) throws(VMConfigError) {
        guard refillTimeMilliseconds <= TokenBucket.maxRefillTimeMilliseconds else {
            throw .invalid("\(field): refill time \(refillTimeMilliseconds) ms is too long; "
                + "at most \(TokenBucket.maxRefillTimeMilliseconds) ms")
        }
    }

    /// Parses the CLI form `SIZE/REFILL_MS[/BURST]`, where SIZE and BURST
    /// take a K, M or G suffix (1024, 1024², 1024³): `1M/1000` is 1 MiB a second.
    public static func parse(_ text: String, option: String, key: String) throws(VMConfigError) -> TokenBucketConfig {
        let usage = "\(option): \(key)=\(text) is not SIZE/REFILL_MS[/BURST] "
            + "(e.g. \(key)=\(key.hasSuffix("ops") ? "1000/1000 for 1000 a second" : "1M/1000 for 1 MiB a second"); "
            + "SIZE and BURST may end in K, M or G)"
        let parts = text.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 2 || parts.count == 3,
            let size = quantity(parts[0]), let refill = UInt64(parts[1]),
            let burst = parts.count == 3 ? quantity(parts[2]) : 0
        else { throw .invalid(usage) }
        guard size > 0 else { throw .invalid("\(option): \(key)=\(text): the size must be above 0 (leave \(key)= out for no limit)") }
        guard refill > 0 else {
            throw .invalid("\(option): \(key)=\(text): the refill time must be at least 1 ms (leave \(key)= out for no limit)")
        }
        let bucket = TokenBucketConfig(size: size, oneTimeBurst: burst, refillTimeMilliseconds: refill)
        try bucket.validate("\(option): \(key)")
        return bucket
    }

    /// `4096`, `64K`, `1M`, `2G`; nil for anything else or an overflow.
    static func quantity(_ text: Substring) -> UInt64? {
        guard let last = text.last else { return nil }
        let shift: UInt64
        switch last {
        case "k", "K": shift = 10
        case "m", "M": shift = 20
        case "g", "G": shift = 30
        default: return UInt64(text)
        }
        guard let value = UInt64(text.dropLast()) else { return nil }
        let (result, overflow) = value.multipliedReportingOverflow(by: 1 << shift)
        return overflow ? nil : result
    }
}

/// A rate limiter, in the terms of Firecracker's `RateLimiter`: a bandwidth
/// bucket (bytes) and an operations bucket (requests or frames), either or
/// both; a nil bucket is no limit of that kind. The devices' own type.
public typealias RateLimiterConfig = RateLimiter.Configuration

extension RateLimiter.Configuration {
    /// Whether either bucket limits anything.
    public var limits: Bool { bandwidth?.limits == true || ops?.limits == true }

    /// Checks both buckets; `field` names the limiter in messages.
    public func validate(_ field: String) throws(VMConfigError) {
        try bandwidth?.validate("\(field) bandwidth")
        try ops?.validate("\(field) ops")
    }

    /// The limiter from the CLI keys `bandwidthKey=` and `opsKey=` of a
    /// parsed device spec; nil when neither is given.
    static func parse(
        _ fields: [String: String], bandwidthKey: String, opsKey: String, option: String
    ) throws(VMConfigError) -> RateLimiterConfig? {
        let bandwidth = try fields[bandwidthKey].map { (text) throws(VMConfigError) in
            try TokenBucketConfig.parse(text, option: option, key: bandwidthKey)
        }
        let ops = try fields[opsKey].map { (text) throws(VMConfigError) in
            try TokenBucketConfig.parse(text, option: option, key: opsKey)
        }
        guard bandwidth != nil || ops != nil else { return nil }
        return RateLimiterConfig(bandwidth: bandwidth, ops: ops)
    }

    /// Parses `--rng-limit`: `bw=SIZE/REFILL_MS[/BURST],ops=SIZE/REFILL_MS[/BURST]`.
    public static func parseEntropyLimit(_ spec: String) throws(VMConfigError) -> RateLimiterConfig {
        let option = "--rng-limit \(spec)"
        let parsed = try DeviceSpec(spec, option: "--rng-limit", keys: ["bw", "ops"], flags: [])
        if let word = parsed.positional.first { throw .invalid("\(option): \"\(word)\" is not key=value (bw= or ops=)") }
        guard let limiter = try parse(parsed.fields, bandwidthKey: "bw", opsKey: "ops", option: option) else {
            throw .invalid("\(option): give bw=SIZE/REFILL_MS[/BURST], ops=SIZE/REFILL_MS[/BURST] or both")
        }
        return limiter
    }
}

/// A virtio-net interface backed by a host TAP device, in the terms of
/// Firecracker's network-interfaces API.
public struct NetConfig: Sendable, Equatable {
    /// The interface's name (Firecracker's `iface_id`).
    public var id: String
    /// The host TAP device (`host_dev_name`), created beforehand with
    /// `ip tuntap add dev NAME mode tap`.
    public var tapName: String
    /// The guest's MAC address (`guest_mac`), six bytes; nil lets the guest pick one.
    public var mac: [UInt8]?
    /// What the guest may receive (`rx_rate_limiter`) and send
    /// (`tx_rate_limiter`): a frame is one operation, its length with the
    /// virtio-net header its bytes. Nil: no limit.
    public var rxRateLimiter: RateLimiterConfig?
    public var txRateLimiter: RateLimiterConfig?

    public init(
        id: String, tapName: String, mac: [UInt8]? = nil, rxRateLimiter: RateLimiterConfig? = nil,
        txRateLimiter: RateLimiterConfig? = nil
    ) {
        self.id = id
        self.tapName = tapName
        self.mac = mac
        self.rxRateLimiter = rxRateLimiter
        self.txRateLimiter = txRateLimiter
    }

    /// Parses the CLI form `id=NAME,tap=TAPNAME[,mac=XX:XX:XX:XX:XX:XX]`
    /// `[,rx-bw=B][,rx-ops=B][,tx-bw=B][,tx-ops=B]`, each B a token bucket
    /// `SIZE/REFILL_MS[/BURST]`.
    public static func parse(_ spec: String) throws(VMConfigError) -> NetConfig {
        let parsed = try DeviceSpec(
            spec, option: "--net", keys: ["id", "tap", "mac", "rx-bw", "rx-ops", "tx-bw", "tx-ops"], flags: [])
        if let word = parsed.positional.first { throw .invalid("--net \(spec): \"\(word)\" is not key=value") }
        guard let id = parsed.fields["id"], !id.isEmpty else { throw .invalid("--net \(spec): id= is required (the interface's name)") }
        guard let tap = parsed.fields["tap"], !tap.isEmpty else {
            throw .invalid("--net \(spec): tap= is required (a TAP device made with: ip tuntap add dev tap0 mode tap)")
        }
        var config = NetConfig(id: id, tapName: tap)
        if let text = parsed.fields["mac"] {
            guard let mac = Self.parseMAC(text) else {
                throw .invalid("--net \(spec): mac=\(text) is not a MAC address like 06:00:ac:10:00:02")
            }
            config.mac = mac
        }
        config.rxRateLimiter = try RateLimiterConfig.parse(
            parsed.fields, bandwidthKey: "rx-bw", opsKey: "rx-ops", option: "--net \(spec)")
        config.txRateLimiter = try RateLimiterConfig.parse(
            parsed.fields, bandwidthKey: "tx-bw", opsKey: "tx-ops", option: "--net \(spec)")
        try config.validate()
        return config
    }

    /// `06:00:AC:10:00:02` as six bytes; nil for anything else.
    public static func parseMAC(_ text: String) -> [UInt8]? {
        let parts = text.split(separator: ":", omittingEmptySubsequences: false)
        guard parts.count == 6 else { return nil }
        let bytes = parts.compactMap { $0.count == 2 ? UInt8($0, radix: 16) : nil }
        return bytes.count == 6 ? bytes : nil
    }

    public static let maxIDLength = 64

    public func validate() throws(VMConfigError) {
        guard !id.isEmpty, id.utf8.count <= NetConfig.maxIDLength,
            id.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "_" || $0 == "-") })
        else {
            throw .invalid("network interface id \"\(id)\" must be 1 to \(NetConfig.maxIDLength) letters, digits, _ or -")
        }
        // IFNAMSIZ is 16 bytes with the terminating NUL.
        guard !tapName.isEmpty, tapName.utf8.count < 16, !tapName.contains("/"), !tapName.contains(" ") else {
            throw .invalid("network interface \(id): tap device name \"\(tapName)\" must be 1 to 15 characters, without / or spaces")
        }
        if let mac {
            guard mac.count == 6 else { throw .invalid("network interface \(id): a MAC address has 6 bytes") }
            guard mac[0] & 1 == 0 else {
                throw .invalid("network interface \(id): \(NetConfig.format(mac)) is a multicast address; "
                    + "the first byte must be even (06:00:... is a locally administered unicast address)")
            }
        }
        try rxRateLimiter?.validate("network interface \(id): rx rate limiter")
        try txRateLimiter?.validate("network interface \(id): tx rate limiter")
    }

    public static func format(_ mac: [UInt8]) -> String {
        mac.map { byte in
            let digits = String(byte, radix: 16)
            return digits.count == 1 ? "0" + digits : digits
        }.joined(separator: ":")
    }
}

/// A hybrid vsock device, in the terms of Firecracker's vsock API: the guest
/// has context id `guestCID`; the host side is Unix sockets at `udsPath`.
public struct VsockConfig: Sendable, Equatable {
    public var guestCID: UInt32
    /// Host programs connect here and write `CONNECT <port>\n`; a guest that
    /// connects to the host's port P reaches the socket `<udsPath>_P`.
    public var udsPath: String

    public init(guestCID: UInt32, udsPath: String) {
        self.guestCID = guestCID
        self.udsPath = udsPath
    }

    /// Parses the CLI form `cid=N,uds=PATH`.
    public static func parse(_ spec: String) throws(VMConfigError) -> VsockConfig {
        let parsed = try DeviceSpec(spec, option: "--vsock", keys: ["cid", "uds"], flags: [])
        if let word = parsed.positional.first { throw .invalid("--vsock \(spec): \"\(word)\" is not key=value") }
        guard let cidText = parsed.fields["cid"], let cid = UInt32(cidText) else {
            throw .invalid("--vsock \(spec): cid= is required: the guest's context id, 3 or more")
        }
        guard let uds = parsed.fields["uds"], !uds.isEmpty else {
            throw .invalid("--vsock \(spec): uds= is required: the path of the Unix socket host programs connect to")
        }
        let config = VsockConfig(guestCID: cid, udsPath: uds)
        try config.validate()
        return config
    }

    public func validate() throws(VMConfigError) {
        // 0 and 1 are reserved, 2 is the host, and 0xffffffff is VMADDR_CID_ANY.
        guard guestCID >= 3, guestCID != UInt32.max else {
            throw .invalid("vsock guest cid \(guestCID) is reserved; use 3 or more (0, 1, 2 and 4294967295 have meanings)")
        }
        // sun_path holds 108 bytes with the NUL, and guest-initiated
        // connections use "<uds>_<port>", up to 11 bytes more.
        guard udsPath.utf8.count + 11 < 108 else {
            throw .invalid("vsock uds path \(udsPath) is too long for a Unix socket (at most 96 bytes, to leave room for _PORT)")
        }
    }
}

/// A virtio-balloon device, in the terms of Firecracker's balloon API.
public struct BalloonConfig: Sendable, Equatable {
    /// How much guest memory the balloon should hold (Firecracker's `amount_mib`).
    public var targetMiB: Int
    /// VIRTIO_BALLOON_F_DEFLATE_ON_OOM: the guest may take pages back when it runs out.
    public var deflateOnOOM: Bool
    /// Seconds between statistics updates; 0 turns the statistics queue off.
    public var statsPollingSeconds: Int
    /// VIRTIO_BALLOON_F_REPORTING: the guest reports free pages, which go back to the host.
    public var freePageReporting: Bool

    public init(targetMiB: Int, deflateOnOOM: Bool = false, statsPollingSeconds: Int = 0, freePageReporting: Bool = false) {
        self.targetMiB = targetMiB
        self.deflateOnOOM = deflateOnOOM
        self.statsPollingSeconds = statsPollingSeconds
        self.freePageReporting = freePageReporting
    }

    /// Parses the CLI form `MIB[,deflate-on-oom][,stats=SECONDS][,reporting]`.
    public static func parse(_ spec: String) throws(VMConfigError) -> BalloonConfig {
        let parsed = try DeviceSpec(spec, option: "--balloon", keys: ["stats"], flags: ["deflate-on-oom", "reporting"])
        guard parsed.positional.count == 1, let target = Int(parsed.positional[0]) else {
            throw .invalid("--balloon \(spec): give the target size in MiB first, e.g. --balloon 64,deflate-on-oom")
        }
        var config = BalloonConfig(
            targetMiB: target, deflateOnOOM: parsed.flags.contains("deflate-on-oom"),
            freePageReporting: parsed.flags.contains("reporting"))
        if let stats = parsed.fields["stats"] {
            guard let seconds = Int(stats), seconds >= 0 else {
                throw .invalid("--balloon \(spec): stats=\(stats) is not a number of seconds (0 turns statistics off)")
            }
            config.statsPollingSeconds = seconds
        }
        try config.validate(memoryMiB: nil)
        return config
    }

    public func validate(memoryMiB: Int?) throws(VMConfigError) {
        guard targetMiB >= 0 else { throw .invalid("balloon target \(targetMiB) MiB is negative") }
        if let memoryMiB, targetMiB > memoryMiB {
            throw .invalid("balloon target \(targetMiB) MiB is more than the guest's \(memoryMiB) MiB of memory")
        }
        guard statsPollingSeconds >= 0 else { throw .invalid("balloon statistics interval \(statsPollingSeconds) s is negative") }
    }
}
