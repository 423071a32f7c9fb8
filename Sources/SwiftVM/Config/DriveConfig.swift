
/// A virtio-block drive, in the terms of Firecracker's drive API.
public struct DriveConfig: Sendable, Equatable {
    /// Whether the guest may ask for its writes to reach the disk.
    public enum CacheType: String, Sendable, CaseIterable {
        /// No flush feature is offered; writes reach the host page cache only.
        case unsafe = "Unsafe"
        /// VIRTIO_BLK_F_FLUSH is offered and a flush is an fsync of the backing file.
        case writeback = "Writeback"
    }

    /// How the VMM does the drive's I/O.
    public enum IOEngine: String, Sendable, CaseIterable {
        /// pread/pwrite on the event-loop thread.
        case sync = "Sync"
        /// io_uring.
        case async = "Async"
    }

    /// The drive's name; the guest reads it as the device serial (GET_ID), at most 20 bytes.
    public var id: String
    public var path: String
    public var readOnly: Bool
    public var cacheType: CacheType
    public var ioEngine: IOEngine
    /// The guest mounts this drive as `/`: it becomes /dev/vda and the command line gets `root=`.
    public var isRootDevice: Bool
    /// With a root device holding a partition table: the root partition's PARTUUID.
    public var partUUID: String?
    /// What the guest may move (Firecracker's `rate_limiter`): a read's or a
    /// write's data in bytes, each request one operation. Nil: no limit.
    public var rateLimiter: RateLimiterConfig?

    public init(
        id: String, path: String, readOnly: Bool = false, cacheType: CacheType = .unsafe,
        ioEngine: IOEngine = .sync, isRootDevice: Bool = false, partUUID: String? = nil,
        rateLimiter: RateLimiterConfig? = nil
    ) {
        self.id = id
        self.path = path
        self.readOnly = readOnly
        self.cacheType = cacheType
        self.ioEngine = ioEngine
        self.isRootDevice = isRootDevice
        self.partUUID = partUUID
        self.rateLimiter = rateLimiter
    }

    public static let maxIDLength = 20

    /// Parses the CLI form `id=NAME,path=FILE[,ro][,root][,cache=unsafe|writeback][,engine=sync|async][,partuuid=UUID]`
    /// `[,bw=SIZE/REFILL_MS[/BURST]][,ops=SIZE/REFILL_MS[/BURST]]`.
    public static func parse(_ spec: String) throws(VMConfigError) -> DriveConfig {
        var fields: [String: String] = [:]
        var flags: Set<String> = []
        for item in spec.split(separator: ",", omittingEmptySubsequences: true) {
            if let equals = item.firstIndex(of: "=") {
                let key = String(item[..<equals]).lowercased()
                guard fields[key] == nil else { throw .invalid("--drive \(spec): \(key) is given twice") }
                fields[key] = String(item[item.index(after: equals)...])
            } else {
                flags.insert(String(item).lowercased())
            }
        }
        let knownKeys: Set = ["id", "path", "cache", "engine", "partuuid", "bw", "ops"]
        let knownFlags: Set = ["ro", "root"]
        if let unknown = fields.keys.sorted().first(where: { !knownKeys.contains($0) }) ?? flags.sorted().first(where: { !knownFlags.contains($0) }) {
            throw .invalid("--drive \(spec): unknown field \"\(unknown)\"; expected id=, path=, cache=, engine=, partuuid=, bw=, ops=, ro, root")
        }
        guard let id = fields["id"], !id.isEmpty else { throw .invalid("--drive \(spec): id= is required (the drive's name)") }
        guard let path = fields["path"], !path.isEmpty else { throw .invalid("--drive \(spec): path= is required (the image file)") }
        var drive = DriveConfig(id: id, path: path, readOnly: flags.contains("ro"), isRootDevice: flags.contains("root"))
        if let cache = fields["cache"] {
            guard let value = CacheType.allCases.first(where: { $0.rawValue.lowercased() == cache.lowercased() }) else {
                throw .invalid("--drive \(spec): cache=\(cache) is not one of unsafe, writeback")
            }
            drive.cacheType = value
        }
        if let engine = fields["engine"] {
            guard let value = IOEngine.allCases.first(where: { $0.rawValue.lowercased() == engine.lowercased() }) else {
                throw .invalid("--drive \(spec): engine=\(engine) is not one of sync, async")
            }
            drive.ioEngine = value
        }
        drive.partUUID = fields["partuuid"]
        drive.rateLimiter = try RateLimiterConfig.parse(fields, bandwidthKey: "bw", opsKey: "ops", option: "--drive \(spec)")
        try drive.validate()
        return drive
    }

    /// Checks one drive on its own; `VMConfig.validate` checks drives against each other.
    public func validate() throws(VMConfigError) {
        guard !id.isEmpty, id.utf8.count <= DriveConfig.maxIDLength,
            id.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "_" || $0 == "-") })
        else {
            throw .invalid("drive id \"\(id)\" must be 1 to \(DriveConfig.maxIDLength) letters, digits, _ or -")
        }
        if partUUID != nil && !isRootDevice {
            throw .invalid("drive \(id): partuuid only applies to the root drive (add root)")
        }
        if let partUUID, partUUID.isEmpty || partUUID.contains(where: { $0 == " " }) {
            throw .invalid("drive \(id): partuuid \"\(partUUID)\" is not a partition UUID")
        }
        try rateLimiter?.validate("drive \(id): rate limiter")
    }

    /// The `root=` words this drive adds to the kernel command line.
    public var rootParameters: String {
        let device = partUUID.map { "root=PARTUUID=\($0)" } ?? "root=/dev/vda"
        return device + (readOnly ? " ro" : " rw")
    }
}
