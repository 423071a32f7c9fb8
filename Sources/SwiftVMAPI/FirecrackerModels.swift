import SwiftVM

// The request and response bodies of Firecracker's API (its swagger
// definitions), with Firecracker's field names. Unknown fields are refused,
// as Firecracker refuses them. Each type turns into swiftvm's configuration
// model in FirecrackerController; nothing here knows about HTTP.

struct BootSource: Codable, Equatable {
    var kernelImagePath: String
    var bootArgs: String?
    var initrdPath: String?

    enum CodingKeys: String, CodingKey {
        case kernelImagePath = "kernel_image_path"
        case bootArgs = "boot_args"
        case initrdPath = "initrd_path"
    }

    func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(kernelImagePath, forKey: .kernelImagePath)
        try container.encodeIfPresent(bootArgs, forKey: .bootArgs)
        try container.encodeIfPresent(initrdPath, forKey: .initrdPath)
    }
}

struct MachineConfiguration: Codable, Equatable {
    var vcpuCount: Int
    var memSizeMib: Int
    var smt: Bool?
    var trackDirtyPages: Bool?
    var cpuTemplate: String?
    var hugePages: String?

    enum CodingKeys: String, CodingKey {
        case vcpuCount = "vcpu_count"
        case memSizeMib = "mem_size_mib"
        case smt
        case trackDirtyPages = "track_dirty_pages"
        case cpuTemplate = "cpu_template"
        case hugePages = "huge_pages"
    }
}

/// PATCH /machine-config: every field optional.
struct PartialMachineConfiguration: Codable, Equatable {
    var vcpuCount: Int?
    var memSizeMib: Int?
    var smt: Bool?
    var trackDirtyPages: Bool?
    var cpuTemplate: String?
    var hugePages: String?

    typealias CodingKeys = MachineConfiguration.CodingKeys
}

struct TokenBucket: Codable, Equatable {
    var size: UInt64
    var oneTimeBurst: UInt64?
    var refillTime: UInt64

    enum CodingKeys: String, CodingKey {
        case size
        case oneTimeBurst = "one_time_burst"
        case refillTime = "refill_time"
    }

    func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(size, forKey: .size)
        try container.encodeIfPresent(oneTimeBurst, forKey: .oneTimeBurst)
        try container.encode(refillTime, forKey: .refillTime)
    }
}

struct RateLimiter: Codable, Equatable {
    var bandwidth: TokenBucket?
    var ops: TokenBucket?

    func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encodeIfPresent(bandwidth, forKey: .bandwidth)
        try container.encodeIfPresent(ops, forKey: .ops)
    }
}

struct Drive: Codable, Equatable {
    var driveId: String
    var pathOnHost: String?
    var isRootDevice: Bool
    var isReadOnly: Bool?
    var partuuid: String?
    var cacheType: String?
    var ioEngine: String?
    var rateLimiter: RateLimiter?
    var socket: String?

    enum CodingKeys: String, CodingKey {
        case driveId = "drive_id"
        case pathOnHost = "path_on_host"
        case isRootDevice = "is_root_device"
        case isReadOnly = "is_read_only"
        case partuuid
        case cacheType = "cache_type"
        case ioEngine = "io_engine"
        case rateLimiter = "rate_limiter"
        case socket
    }

    func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(driveId, forKey: .driveId)
        try container.encodeIfPresent(pathOnHost, forKey: .pathOnHost)
        try container.encode(isRootDevice, forKey: .isRootDevice)
        try container.encodeIfPresent(isReadOnly, forKey: .isReadOnly)
        try container.encodeIfPresent(partuuid, forKey: .partuuid)
        try container.encodeIfPresent(cacheType, forKey: .cacheType)
        try container.encodeIfPresent(ioEngine, forKey: .ioEngine)
        try container.encodeIfPresent(rateLimiter, forKey: .rateLimiter)
    }
}

struct PartialDrive: Codable, Equatable {
    var driveId: String
    var pathOnHost: String?
    var rateLimiter: RateLimiter?

    enum CodingKeys: String, CodingKey {
        case driveId = "drive_id"
        case pathOnHost = "path_on_host"
        case rateLimiter = "rate_limiter"
    }
}

struct NetworkInterface: Codable, Equatable {
    var ifaceId: String
    var hostDevName: String
    var guestMac: String?
    var mtu: Int?
    var rxRateLimiter: RateLimiter?
    var txRateLimiter: RateLimiter?

    enum CodingKeys: String, CodingKey {
        case ifaceId = "iface_id"
        case hostDevName = "host_dev_name"
        case guestMac = "guest_mac"
        case mtu
        case rxRateLimiter = "rx_rate_limiter"
        case txRateLimiter = "tx_rate_limiter"
    }

    func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(ifaceId, forKey: .ifaceId)
        try container.encode(hostDevName, forKey: .hostDevName)
        try container.encodeIfPresent(guestMac, forKey: .guestMac)
        try container.encodeIfPresent(mtu, forKey: .mtu)
        try container.encodeIfPresent(rxRateLimiter, forKey: .rxRateLimiter)
        try container.encodeIfPresent(txRateLimiter, forKey: .txRateLimiter)
    }
}

struct PartialNetworkInterface: Codable, Equatable {
    var ifaceId: String
    var rxRateLimiter: RateLimiter?
    var txRateLimiter: RateLimiter?

    enum CodingKeys: String, CodingKey {
        case ifaceId = "iface_id"
        case rxRateLimiter = "rx_rate_limiter"
        case txRateLimiter = "tx_rate_limiter"
    }
}

struct Vsock: Codable, Equatable {
    var guestCid: UInt32
    var udsPath: String
    /// Deprecated in Firecracker; accepted and ignored.
    var vsockId: String?

    enum CodingKeys: String, CodingKey {
        case guestCid = "guest_cid"
        case udsPath = "uds_path"
        case vsockId = "vsock_id"
    }

    func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(guestCid, forKey: .guestCid)
        try container.encode(udsPath, forKey: .udsPath)
    }
}

struct EntropyDevice: Codable, Equatable {
    var rateLimiter: RateLimiter?

    enum CodingKeys: String, CodingKey {
        case rateLimiter = "rate_limiter"
    }

    func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encodeIfPresent(rateLimiter, forKey: .rateLimiter)
    }
}

struct Balloon: Codable, Equatable {
    var amountMib: Int
    var deflateOnOom: Bool
    var statsPollingIntervalS: Int?
    var freePageReporting: Bool?
    var freePageHinting: Bool?

    enum CodingKeys: String, CodingKey {
        case amountMib = "amount_mib"
        case deflateOnOom = "deflate_on_oom"
        case statsPollingIntervalS = "stats_polling_interval_s"
        case freePageReporting = "free_page_reporting"
        case freePageHinting = "free_page_hinting"
    }

    func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(amountMib, forKey: .amountMib)
        try container.encode(deflateOnOom, forKey: .deflateOnOom)
        try container.encode(statsPollingIntervalS ?? 0, forKey: .statsPollingIntervalS)
        try container.encodeIfPresent(freePageReporting, forKey: .freePageReporting)
    }
}

struct BalloonUpdate: Codable, Equatable {
    var amountMib: Int

    enum CodingKeys: String, CodingKey {
        case amountMib = "amount_mib"
    }
}

struct BalloonStatsUpdate: Codable, Equatable {
    var statsPollingIntervalS: Int

    enum CodingKeys: String, CodingKey {
        case statsPollingIntervalS = "stats_polling_interval_s"
    }
}

struct LoggerConfig: Codable, Equatable {
    var logPath: String?
    var level: String?
    var showLevel: Bool?
    var showLogOrigin: Bool?
    var module: String?

    enum CodingKeys: String, CodingKey {
        case logPath = "log_path"
        case level
        case showLevel = "show_level"
        case showLogOrigin = "show_log_origin"
        case module
    }

    func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encodeIfPresent(logPath, forKey: .logPath)
        try container.encodeIfPresent(level, forKey: .level)
        try container.encodeIfPresent(showLevel, forKey: .showLevel)
        try container.encodeIfPresent(showLogOrigin, forKey: .showLogOrigin)
        try container.encodeIfPresent(module, forKey: .module)
    }
}

struct MetricsConfig: Codable, Equatable {
    var metricsPath: String

    enum CodingKeys: String, CodingKey {
        case metricsPath = "metrics_path"
    }
}

struct SerialDevice: Codable, Equatable {
    var serialOutPath: String?
    var rateLimiter: TokenBucket?

    enum CodingKeys: String, CodingKey {
        case serialOutPath = "serial_out_path"
        case rateLimiter = "rate_limiter"
    }
}

struct VmStateChange: Codable, Equatable {
    enum State: String, Codable, CaseIterable {
        case paused = "Paused"
        case resumed = "Resumed"
    }
    var state: State
}

struct InstanceActionInfo: Codable, Equatable {
    enum Action: String, Codable, CaseIterable {
        case instanceStart = "InstanceStart"
        case sendCtrlAltDel = "SendCtrlAltDel"
        case flushMetrics = "FlushMetrics"
    }
    var actionType: Action

    enum CodingKeys: String, CodingKey {
        case actionType = "action_type"
    }
}

struct InstanceInfo: Codable, Equatable {
    var appName: String
    var id: String
    var state: String
    var vmmVersion: String

    enum CodingKeys: String, CodingKey {
        case appName = "app_name"
        case id
        case state
        case vmmVersion = "vmm_version"
    }
}

struct FirecrackerVersion: Codable, Equatable {
    var firecrackerVersion: String

    enum CodingKeys: String, CodingKey {
        case firecrackerVersion = "firecracker_version"
    }
}

/// The error body of every 4xx and 5xx answer.
struct FaultMessage: Codable, Equatable {
    var faultMessage: String

    enum CodingKeys: String, CodingKey {
        case faultMessage = "fault_message"
    }
}

/// The latest balloon statistics (GET /balloon/statistics).
struct BalloonStatsReply: Encodable, Equatable {
    var targetPages: UInt64
    var actualPages: UInt64
    var targetMib: UInt64
    var actualMib: UInt64
    var values: [(String, UInt64)]

    static func == (lhs: BalloonStatsReply, rhs: BalloonStatsReply) -> Bool {
        lhs.targetPages == rhs.targetPages && lhs.actualPages == rhs.actualPages && lhs.values.map(\.0) == rhs.values.map(\.0)
            && lhs.values.map(\.1) == rhs.values.map(\.1)
    }

    struct Key: CodingKey {
        var stringValue: String
        var intValue: Int? { nil }
        init(stringValue: String) { self.stringValue = stringValue }
        init?(intValue: Int) { nil }
    }

    func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: Key.self)
        try container.encode(targetPages, forKey: Key(stringValue: "target_pages"))
        try container.encode(actualPages, forKey: Key(stringValue: "actual_pages"))
        try container.encode(targetMib, forKey: Key(stringValue: "target_mib"))
        try container.encode(actualMib, forKey: Key(stringValue: "actual_mib"))
        for (name, value) in values { try container.encode(value, forKey: Key(stringValue: name)) }
    }
}

/// The whole configuration, as `GET /vm/config` returns it and a config file
/// (`--config-file`) gives it.
struct FullVmConfiguration: Codable, Equatable {
    var bootSource: BootSource?
    var machineConfig: MachineConfiguration?
    var cpuConfig: JSONValue?
    var drives: [Drive]?
    var networkInterfaces: [NetworkInterface]?
    var vsock: Vsock?
    var balloon: Balloon?
    var entropy: EntropyDevice?
    var logger: LoggerConfig?
    var metrics: MetricsConfig?
    /// Firecracker's MMDS, which swiftvm does not have: accepted only when absent.
    var mmdsConfig: JSONValue?

    enum CodingKeys: String, CodingKey {
        case bootSource = "boot-source"
        case machineConfig = "machine-config"
        case cpuConfig = "cpu-config"
        case drives
        case networkInterfaces = "network-interfaces"
        case vsock
        case balloon
        case entropy
        case logger
        case metrics
        case mmdsConfig = "mmds-config"
    }

    func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encodeIfPresent(balloon, forKey: .balloon)
        try container.encode(drives ?? [], forKey: .drives)
        try container.encodeIfPresent(bootSource, forKey: .bootSource)
        try container.encodeIfPresent(machineConfig, forKey: .machineConfig)
        try container.encodeIfPresent(cpuConfig, forKey: .cpuConfig)
        try container.encode(networkInterfaces ?? [], forKey: .networkInterfaces)
        try container.encodeIfPresent(vsock, forKey: .vsock)
        try container.encodeIfPresent(entropy, forKey: .entropy)
        try container.encodeIfPresent(logger, forKey: .logger)
        try container.encodeIfPresent(metrics, forKey: .metrics)
    }
}
