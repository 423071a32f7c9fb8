import Glibc
import Synchronization
import SwiftVM

/// The VMM behind Firecracker's API and config file: collects the
/// configuration before boot, starts the VM on `InstanceStart`, and drives it
/// afterwards, with Firecracker's rules for what may change when. It knows
/// nothing about HTTP: `handle` takes a method, a path and a body and answers
/// with a status and a JSON body, so the API server, the config file and the
/// tests all go through the same door.
final class FirecrackerController: Sendable {
    struct Reply: Equatable {
        var status: Int
        /// JSON; nil for 204.
        var body: [UInt8]?

        static let noContent = Reply(status: 204, body: nil)

        static func ok(_ value: some Encodable) -> Reply { Reply(status: 200, body: JSONOutput.encode(value)) }

        static func badRequest(_ message: String) -> Reply {
            Reply(status: 400, body: JSONOutput.encode(FaultMessage(faultMessage: message)))
        }

        var faultMessage: String? {
            guard status >= 400, let body, let fault = try? JSONInput.decode(FaultMessage.self, from: body, source: "reply")
            else { return nil }
            return fault.faultMessage
        }
    }

    /// The configuration as the API has built it so far.
    struct Pending {
        var bootSource: BootSource?
        var machine = MachineConfiguration(vcpuCount: 1, memSizeMib: 128, smt: false, trackDirtyPages: false,
                                           cpuTemplate: nil, hugePages: nil)
        var cpuConfig: [UInt8]?
        var drives: [Drive] = []
        var networkInterfaces: [NetworkInterface] = []
        var vsock: Vsock?
        var balloon: Balloon?
        var entropy: EntropyDevice?
        var logger: LoggerConfig?
        var metrics: MetricsConfig?
        var serialOutPath: String?
    }

    private struct State {
        var pending = Pending()
        var vm: MicroVM?
        var loggerConfigured = false
        var metricsConfigured = false
    }

    let instanceID: String
    static let version = "1.12.0"
    private let state = Mutex(State())
    /// Called once the VM runs, with it, so the front end can wait for its end.
    private let onStart: @Sendable (MicroVM) -> Void
    /// Sets up logging (PUT /logger); returns an error message or nil.
    private let configureLogger: @Sendable (LoggerConfig) -> String?
    /// The metrics sink (PUT /metrics, FlushMetrics).
    let metrics: FirecrackerMetrics
    /// Log the guest's boot-timer write (Firecracker's --boot-timer).
    private let bootTimer: Bool

    init(
        instanceID: String, metrics: FirecrackerMetrics,
        configureLogger: @escaping @Sendable (LoggerConfig) -> String?,
        onStart: @escaping @Sendable (MicroVM) -> Void, bootTimer: Bool = false
    ) {
        self.instanceID = instanceID
        self.metrics = metrics
        self.configureLogger = configureLogger
        self.onStart = onStart
        self.bootTimer = bootTimer
    }

    var vm: MicroVM? { state.withLock { $0.vm } }

    // MARK: - Dispatch

    /// Answers one request. `path` has no query string.
    func handle(method: String, path: String, body: [UInt8]) -> Reply {
        let reply = route(method: method, path: path, body: body)
        metrics.countRequest(method: method, path: path, status: reply.status)
        return reply
    }

    private func route(method: String, path: String, body: [UInt8]) -> Reply {
        let parts = path.split(separator: "/", omittingEmptySubsequences: true).map(String.init)
        switch (method, parts.first, parts.count) {
        case ("GET", nil, 0): return .ok(instanceInfo())
        case ("GET", "version", 1): return .ok(FirecrackerVersion(firecrackerVersion: Self.version))
        case ("PUT", "actions", 1): return decode(InstanceActionInfo.self, body) { action($0.actionType) }
        case ("PUT", "boot-source", 1): return decode(BootSource.self, body) { putBootSource($0) }
        case ("GET", "machine-config", 1): return .ok(state.withLock { $0.pending.machine })
        case ("PUT", "machine-config", 1): return decode(MachineConfiguration.self, body) { putMachine($0) }
        case ("PATCH", "machine-config", 1): return decode(PartialMachineConfiguration.self, body) { patchMachine($0) }
        case ("PUT", "cpu-config", 1): return putCPUConfig(body)
        case ("PUT", "drives", 2): return decode(Drive.self, body) { putDrive(parts[1], $0) }
        case ("PATCH", "drives", 2): return decode(PartialDrive.self, body) { patchDrive(parts[1], $0) }
        case ("PUT", "network-interfaces", 2): return decode(NetworkInterface.self, body) { putNet(parts[1], $0) }
        case ("PATCH", "network-interfaces", 2):
            return decode(PartialNetworkInterface.self, body) { patchNet(parts[1], $0) }
        case ("PUT", "vsock", 1): return decode(Vsock.self, body) { putVsock($0) }
        case ("PUT", "entropy", 1): return decode(EntropyDevice.self, body) { putEntropy($0) }
        case ("GET", "balloon", 1): return getBalloon()
        case ("PUT", "balloon", 1): return decode(Balloon.self, body) { putBalloon($0) }
        case ("PATCH", "balloon", 1): return decode(BalloonUpdate.self, body) { patchBalloon($0) }
        case ("GET", "balloon", 2) where parts[1] == "statistics": return getBalloonStatistics()
        case ("PATCH", "balloon", 2) where parts[1] == "statistics":
            return decode(BalloonStatsUpdate.self, body) { patchBalloonStatistics($0) }
        case ("PUT", "logger", 1): return decode(LoggerConfig.self, body) { putLogger($0) }
        case ("PUT", "metrics", 1): return decode(MetricsConfig.self, body) { putMetrics($0) }
        case ("PUT", "serial", 1): return decode(SerialDevice.self, body) { putSerial($0) }
        case ("PATCH", "vm", 1): return decode(VmStateChange.self, body) { patchVM($0) }
        case ("GET", "vm", 2) where parts[1] == "config": return .ok(fullConfiguration())
        default:
            return .badRequest("Invalid request method and/or path: \(method) \(path).")
        }
    }

    /// Decodes the body strictly, then runs `then`; a bad body names the field.
    private func decode<T: Decodable>(_ type: T.Type, _ body: [UInt8], then: (T) -> Reply) -> Reply {
        guard !body.isEmpty else { return .badRequest("The request needs a JSON body.") }
        do { return then(try JSONInput.decode(type, from: body, source: "request body")) } catch {
            return .badRequest(error.description)
        }
    }

    private static let preBootOnly = "The requested operation is not supported after starting the microVM."
    private static let postBootOnly = "The requested operation is not supported before starting the microVM."

    /// Runs `change` on the pending configuration, unless the VM has started.
    private func preBoot(_ change: (inout Pending) -> Reply) -> Reply {
        state.withLock { state in
            guard state.vm == nil else { return .badRequest(Self.preBootOnly) }
            return change(&state.pending)
        }
    }

    // MARK: - Instance

    private func instanceInfo() -> InstanceInfo {
        let vmState: String
        switch state.withLock({ $0.vm })?.state {
        case nil, .created?: vmState = "Not started"
        case .paused?: vmState = "Paused"
        case .running?, .stopped?: vmState = "Running"
        }
        return InstanceInfo(appName: "Firecracker", id: instanceID, state: vmState, vmmVersion: Self.version)
    }

    private func action(_ action: InstanceActionInfo.Action) -> Reply {
        switch action {
        case .instanceStart: return start()
        case .sendCtrlAltDel:
            guard let vm else { return .badRequest(Self.postBootOnly) }
            do { try vm.sendCtrlAltDel() } catch { return .badRequest(error.message) }
            return .noContent
        case .flushMetrics:
            guard metrics.isConfigured else { return .badRequest("The metrics system is not initialized: PUT /metrics first.") }
            metrics.flush(vm: vm)
            return .noContent
        }
    }

    /// Builds and starts the VM from the pending configuration.
    private func start() -> Reply {
        let result: Result<MicroVM, VMMError> = state.withLock { state in
            guard state.vm == nil else { return .failure(VMMError(.usage, Self.preBootOnly)) }
            var config: VMConfig
            do throws(VMMError) { config = try Self.vmConfig(state.pending) } catch { return .failure(error) }
            config.reportBootTime = bootTimer
            let vm: MicroVM
            do throws(VMMError) {
                vm = try MicroVM(config: config)
                try vm.start()
            } catch { return .failure(error) }
            state.vm = vm
            return .success(vm)
        }
        switch result {
        case .success(let vm):
            onStart(vm)
            return .noContent
        case .failure(let error):
            return .badRequest("Start microvm error: \(error.message)")
        }
    }

    // MARK: - Boot source, machine, CPU

    private func putBootSource(_ source: BootSource) -> Reply {
        preBoot { pending in
            if let problem = Self.checkReadable(source.kernelImagePath, "kernel image") { return .badRequest(problem) }
            if let initrd = source.initrdPath, let problem = Self.checkReadable(initrd, "initrd") { return .badRequest(problem) }
            pending.bootSource = source
            return .noContent
        }
    }

    private func putMachine(_ machine: MachineConfiguration) -> Reply {
        preBoot { pending in
            if let problem = Self.check(machine) { return .badRequest(problem) }
            pending.machine = machine
            return .noContent
        }
    }

    private func patchMachine(_ patch: PartialMachineConfiguration) -> Reply {
        preBoot { pending in
            var machine = pending.machine
            if let value = patch.vcpuCount { machine.vcpuCount = value }
            if let value = patch.memSizeMib { machine.memSizeMib = value }
            if let value = patch.smt { machine.smt = value }
            if let value = patch.trackDirtyPages { machine.trackDirtyPages = value }
            if let value = patch.cpuTemplate { machine.cpuTemplate = value }
            if let value = patch.hugePages { machine.hugePages = value }
            if let problem = Self.check(machine) { return .badRequest(problem) }
            pending.machine = machine
            return .noContent
        }
    }

    /// Firecracker's rules for a machine configuration, for what swiftvm has.
    static func check(_ machine: MachineConfiguration) -> String? {
        guard (1...VMConfig.maxVCPUs).contains(machine.vcpuCount) else {
            return "vcpu_count: the vCPU count must be between 1 and \(VMConfig.maxVCPUs); got \(machine.vcpuCount)."
        }
        guard (VMConfig.minMemoryMiB...VMConfig.maxMemoryMiB).contains(machine.memSizeMib) else {
            return "mem_size_mib: the memory size must be between \(VMConfig.minMemoryMiB) and "
                + "\(VMConfig.maxMemoryMiB) MiB; got \(machine.memSizeMib)."
        }
        if machine.smt == true {
            return "smt: simultaneous multithreading is not supported by swiftvm; leave it false."
        }
        if machine.trackDirtyPages == true {
            return "track_dirty_pages: dirty page tracking (for snapshots) is not supported by swiftvm; leave it false."
        }
        if let template = machine.cpuTemplate, template != "None" {
            return "cpu_template: static CPU template \"\(template)\" is not supported; use None, or a custom "
                + "template with PUT /cpu-config."
        }
        if let huge = machine.hugePages, huge != "None" {
            return "huge_pages: \(huge) is not supported; swiftvm backs guest memory with ordinary pages (None)."
        }
        return nil
    }

    private func putCPUConfig(_ body: [UInt8]) -> Reply {
        guard !body.isEmpty else { return .badRequest("The request needs a JSON body.") }
        // The same reader as --cpu-template, so the same errors, with positions.
        do { _ = try CPUTemplateFile.parse(body, source: "request body") } catch { return .badRequest(error.description) }
        return preBoot { pending in
            pending.cpuConfig = body
            return .noContent
        }
    }

    // MARK: - Drives

    private func putDrive(_ id: String, _ drive: Drive) -> Reply {
        guard drive.driveId == id else {
            return .badRequest("The id from the path (\(id)) does not match the id from the body (\(drive.driveId)).")
        }
        if drive.socket != nil {
            return .badRequest("socket: vhost-user block devices are not supported by swiftvm; give path_on_host.")
        }
        guard let path = drive.pathOnHost else { return .badRequest("path_on_host: a drive needs the path of its image.") }
        return preBoot { pending in
            if let problem = Self.checkReadable(path, "drive image") { return .badRequest(problem) }
            var drives = pending.drives.filter { $0.driveId != id }
            if drive.isRootDevice, let other = drives.first(where: { $0.isRootDevice }) {
                return .badRequest("A root block device already exists (\(other.driveId)); only one drive can hold /.")
            }
            var drive = drive
            drive.rateLimiter = Self.normalized(drive.rateLimiter)
            drives.append(drive)
            do throws(VMConfigError) {
                _ = try Self.driveConfig(drive)
                var probe = VMConfig(kernelPath: "")
                probe.drives = try drives.map(Self.driveConfig)
                probe.entropyDevice = false
                try probe.validate()
            } catch {
                return .badRequest(error.description)
            }
            // A new drive keeps its place; a replaced one keeps the old one's.
            if let index = pending.drives.firstIndex(where: { $0.driveId == id }) {
                pending.drives[index] = drive
            } else {
                pending.drives.append(drive)
            }
            return .noContent
        }
    }

    private func patchDrive(_ id: String, _ patch: PartialDrive) -> Reply {
        guard patch.driveId == id else {
            return .badRequest("The id from the path (\(id)) does not match the id from the body (\(patch.driveId)).")
        }
        let limiter: RateLimiterConfig?
        do throws(VMConfigError) { limiter = try patch.rateLimiter.map { (model) throws(VMConfigError) in
            try Self.rateLimiterFields(model, field: "rate_limiter")
        } } catch { return .badRequest(error.description) }
        return state.withLock { state in
            guard let index = state.pending.drives.firstIndex(where: { $0.driveId == id }) else {
                return .badRequest("Drive \(id) does not exist: PUT /drives/\(id) first.")
            }
            if let vm = state.vm {
                // After boot Firecracker swaps the backing file; swiftvm keeps
                // the one it opened and says so rather than pretend.
                if patch.pathOnHost != nil {
                    return .badRequest("path_on_host: swiftvm cannot change a drive's backing file while the "
                        + "guest runs; configure it before InstanceStart.")
                }
                if let limiter {
                    do throws(VMMError) { try vm.updateRateLimiter(.drive(id), RateLimiterUpdate(patch: limiter)) } catch {
                        return .badRequest("rate_limiter: \(error.message)")
                    }
                }
            } else if let path = patch.pathOnHost {
                if let problem = Self.checkReadable(path, "drive image") { return .badRequest(problem) }
                state.pending.drives[index].pathOnHost = path
            }
            let current = state.pending.drives[index].rateLimiter
            state.pending.drives[index].rateLimiter = Self.merged(current, patch: patch.rateLimiter)
            return .noContent
        }
    }

    static func driveConfig(_ drive: Drive) throws(VMConfigError) -> DriveConfig {
        var config = DriveConfig(
            id: drive.driveId, path: drive.pathOnHost ?? "", readOnly: drive.isReadOnly ?? false,
            isRootDevice: drive.isRootDevice, partUUID: drive.partuuid)
        if let cache = drive.cacheType {
            guard let value = DriveConfig.CacheType(rawValue: cache) else {
                throw .invalid("cache_type: \"\(cache)\" is not one of Unsafe, Writeback")
            }
            config.cacheType = value
        }
        if let engine = drive.ioEngine {
            guard let value = DriveConfig.IOEngine(rawValue: engine) else {
                throw .invalid("io_engine: \"\(engine)\" is not one of Sync, Async")
            }
            config.ioEngine = value
        }
        config.rateLimiter = try rateLimiterConfig(drive.rateLimiter, field: "rate_limiter")
        try config.validate()
        return config
    }

    // MARK: - Network, vsock, entropy, balloon

    private func putNet(_ id: String, _ net: NetworkInterface) -> Reply {
        guard net.ifaceId == id else {
            return .badRequest("The id from the path (\(id)) does not match the id from the body (\(net.ifaceId)).")
        }
        return preBoot { pending in
            do throws(VMConfigError) { _ = try Self.netConfig(net) } catch { return .badRequest(error.description) }
            if let other = pending.networkInterfaces.first(where: { $0.ifaceId != id && $0.hostDevName == net.hostDevName }) {
                return .badRequest("The host device \(net.hostDevName) is already used by interface \(other.ifaceId).")
            }
            var net = net
            net.rxRateLimiter = Self.normalized(net.rxRateLimiter)
            net.txRateLimiter = Self.normalized(net.txRateLimiter)
            if let index = pending.networkInterfaces.firstIndex(where: { $0.ifaceId == id }) {
                pending.networkInterfaces[index] = net
            } else {
                pending.networkInterfaces.append(net)
            }
            return .noContent
        }
    }

    private func patchNet(_ id: String, _ patch: PartialNetworkInterface) -> Reply {
        guard patch.ifaceId == id else {
            return .badRequest("The id from the path (\(id)) does not match the id from the body (\(patch.ifaceId)).")
        }
        let rx: RateLimiterConfig?
        let tx: RateLimiterConfig?
        do throws(VMConfigError) {
            rx = try patch.rxRateLimiter.map { (model) throws(VMConfigError) in
                try Self.rateLimiterFields(model, field: "rx_rate_limiter")
            }
            tx = try patch.txRateLimiter.map { (model) throws(VMConfigError) in
                try Self.rateLimiterFields(model, field: "tx_rate_limiter")
            }
        } catch { return .badRequest(error.description) }
        return state.withLock { state in
            guard let index = state.pending.networkInterfaces.firstIndex(where: { $0.ifaceId == id }) else {
                return .badRequest("Network interface \(id) does not exist: PUT /network-interfaces/\(id) first.")
            }
            if let vm = state.vm {
                do throws(VMMError) {
                    if let rx { try vm.updateRateLimiter(.netReceive(id), RateLimiterUpdate(patch: rx)) }
                    if let tx { try vm.updateRateLimiter(.netTransmit(id), RateLimiterUpdate(patch: tx)) }
                } catch {
                    return .badRequest("rx_rate_limiter/tx_rate_limiter: \(error.message)")
                }
            }
            var net = state.pending.networkInterfaces[index]
            net.rxRateLimiter = Self.merged(net.rxRateLimiter, patch: patch.rxRateLimiter)
            net.txRateLimiter = Self.merged(net.txRateLimiter, patch: patch.txRateLimiter)
            state.pending.networkInterfaces[index] = net
            return .noContent
        }
    }

    static func netConfig(_ net: NetworkInterface) throws(VMConfigError) -> NetConfig {
        var config = NetConfig(id: net.ifaceId, tapName: net.hostDevName)
        if let mac = net.guestMac {
            guard let bytes = NetConfig.parseMAC(mac) else {
                throw .invalid("guest_mac: \"\(mac)\" is not a MAC address like 06:00:ac:10:00:02")
            }
            config.mac = bytes
        }
        if net.mtu != nil { throw .invalid("mtu: setting the MTU is not supported by swiftvm; leave it out") }
        config.rxRateLimiter = try rateLimiterConfig(net.rxRateLimiter, field: "rx_rate_limiter")
        config.txRateLimiter = try rateLimiterConfig(net.txRateLimiter, field: "tx_rate_limiter")
        try config.validate()
        return config
    }

    private func putVsock(_ vsock: Vsock) -> Reply {
        preBoot { pending in
            do throws(VMConfigError) { try VsockConfig(guestCID: vsock.guestCid, udsPath: vsock.udsPath).validate() } catch {
                return .badRequest(error.description)
            }
            pending.vsock = vsock
            return .noContent
        }
    }

    private func putEntropy(_ entropy: EntropyDevice) -> Reply {
        do throws(VMConfigError) { _ = try Self.rateLimiterConfig(entropy.rateLimiter, field: "rate_limiter") } catch {
            return .badRequest(error.description)
        }
        return preBoot { pending in
            pending.entropy = EntropyDevice(rateLimiter: Self.normalized(entropy.rateLimiter))
            return .noContent
        }
    }

    // MARK: - Rate limiters

    /// The buckets `model` gives, checked; `field` names it in messages.
    /// Buckets that limit nothing (size or refill_time 0) stay: in a PATCH
    /// they turn that limit off, as in Firecracker.
    static func rateLimiterFields(_ model: RateLimiter, field: String) throws(VMConfigError) -> RateLimiterConfig {
        func bucket(_ bucket: TokenBucket?, _ name: String) throws(VMConfigError) -> TokenBucketConfig? {
            guard let bucket else { return nil }
            let config = TokenBucketConfig(
                size: bucket.size, oneTimeBurst: bucket.oneTimeBurst ?? 0, refillTimeMilliseconds: bucket.refillTime)
            try config.validate("\(field).\(name).refill_time")
            return config
        }
        return RateLimiterConfig(bandwidth: try bucket(model.bandwidth, "bandwidth"), ops: try bucket(model.ops, "ops"))
    }

    /// A configured limiter in swiftvm's model: the buckets that limit; nil
    /// when none does.
    static func rateLimiterConfig(_ model: RateLimiter?, field: String) throws(VMConfigError) -> RateLimiterConfig? {
        guard let model else { return nil }
        let all = try rateLimiterFields(model, field: field)
        let kept = RateLimiterConfig(
            bandwidth: all.bandwidth.flatMap { $0.limits ? $0 : nil }, ops: all.ops.flatMap { $0.limits ? $0 : nil })
        return kept.limits ? kept : nil
    }

    /// A limiter as `GET /vm/config` shows it, as Firecracker does: only
    /// buckets that limit, `one_time_burst` only when not 0, nothing when no
    /// bucket limits.
    static func normalized(_ model: RateLimiter?) -> RateLimiter? {
        func bucket(_ bucket: TokenBucket?) -> TokenBucket? {
            guard var bucket, bucket.size > 0, bucket.refillTime > 0 else { return nil }
            if bucket.oneTimeBurst == 0 { bucket.oneTimeBurst = nil }
            return bucket
        }
        let result = RateLimiter(bandwidth: bucket(model?.bandwidth), ops: bucket(model?.ops))
        return result.bandwidth == nil && result.ops == nil ? nil : result
    }

    /// `current` after Firecracker's PATCH: each bucket `patch` gives
    /// replaces the old one; the others stay.
    static func merged(_ current: RateLimiter?, patch: RateLimiter?) -> RateLimiter? {
        guard let patch else { return current }
        var result = current ?? RateLimiter()
        if let bandwidth = patch.bandwidth { result.bandwidth = bandwidth }
        if let ops = patch.ops { result.ops = ops }
        return normalized(result)
    }

    private func putBalloon(_ balloon: Balloon) -> Reply {
        if balloon.freePageHinting == true {
            return .badRequest("free_page_hinting: free page hinting is not supported by swiftvm; "
                + "free_page_reporting returns free memory instead.")
        }
        return preBoot { pending in
            do throws(VMConfigError) { try Self.balloonConfig(balloon).validate(memoryMiB: pending.machine.memSizeMib) } catch {
                return .badRequest(error.description)
            }
            pending.balloon = balloon
            return .noContent
        }
    }

    static func balloonConfig(_ balloon: Balloon) -> BalloonConfig {
        BalloonConfig(
            targetMiB: balloon.amountMib, deflateOnOOM: balloon.deflateOnOom,
            statsPollingSeconds: balloon.statsPollingIntervalS ?? 0, freePageReporting: balloon.freePageReporting ?? false)
    }

    private func getBalloon() -> Reply {
        state.withLock { state in
            guard var balloon = state.pending.balloon else {
                return .badRequest("No balloon device is configured: PUT /balloon first.")
            }
            if let vm = state.vm, let size = try? vm.balloonSize() { balloon.amountMib = size.targetMiB }
            return .ok(balloon)
        }
    }

    private func patchBalloon(_ update: BalloonUpdate) -> Reply {
        state.withLock { state in
            guard state.pending.balloon != nil else {
                return .badRequest("No balloon device is configured: PUT /balloon first.")
            }
            guard update.amountMib >= 0, update.amountMib <= state.pending.machine.memSizeMib else {
                return .badRequest("amount_mib: the target must be between 0 and the guest's "
                    + "\(state.pending.machine.memSizeMib) MiB; got \(update.amountMib).")
            }
            if let vm = state.vm {
                do throws(VMMError) { try vm.setBalloonTarget(mib: update.amountMib) } catch {
                    return .badRequest(error.message)
                }
            }
            state.pending.balloon?.amountMib = update.amountMib
            return .noContent
        }
    }

    private func getBalloonStatistics() -> Reply {
        state.withLock { state in
            guard let balloon = state.pending.balloon else {
                return .badRequest("No balloon device is configured: PUT /balloon first.")
            }
            guard (balloon.statsPollingIntervalS ?? 0) > 0 else {
                return .badRequest("Balloon statistics are not enabled: set stats_polling_interval_s above 0 before boot.")
            }
            guard let vm = state.vm else { return .badRequest(Self.postBootOnly) }
            do throws(VMMError) {
                return .ok(Self.statsReply(size: try vm.balloonSize(), statistics: try vm.balloonStatistics()))
            } catch {
                return .badRequest(error.message)
            }
        }
    }

    private func patchBalloonStatistics(_ update: BalloonStatsUpdate) -> Reply {
        state.withLock { state in
            guard let balloon = state.pending.balloon else {
                return .badRequest("No balloon device is configured: PUT /balloon first.")
            }
            guard let vm = state.vm else { return .badRequest(Self.postBootOnly) }
            guard (balloon.statsPollingIntervalS ?? 0) > 0, update.statsPollingIntervalS > 0 else {
                return .badRequest("stats_polling_interval_s: statistics can only be re-timed after boot when "
                    + "they were enabled before it, and cannot be turned off then.")
            }
            do throws(VMMError) { try vm.setBalloonStatisticsInterval(seconds: update.statsPollingIntervalS) } catch {
                return .badRequest(error.message)
            }
            state.pending.balloon?.statsPollingIntervalS = update.statsPollingIntervalS
            return .noContent
        }
    }

    /// GET /balloon/statistics: sizes, and the guest's latest values under
    /// Firecracker's names (absent until the guest first reported them).
    static func statsReply(size: BalloonSize, statistics: BalloonStatistics?) -> BalloonStatsReply {
        var values: [(String, UInt64)] = []
        if let s = statistics {
            let named: [(String, UInt64?)] = [
                ("swap_in", s.swapIn), ("swap_out", s.swapOut), ("major_faults", s.majorFaults),
                ("minor_faults", s.minorFaults), ("free_memory", s.freeMemory), ("total_memory", s.totalMemory),
                ("available_memory", s.availableMemory), ("disk_caches", s.diskCaches),
                ("hugetlb_allocations", s.hugetlbAllocations), ("hugetlb_failures", s.hugetlbFailures),
                ("oom_kill", s.oomKills), ("alloc_stall", s.allocationStalls), ("async_scan", s.asyncScans),
                ("direct_scan", s.directScans), ("async_reclaim", s.asyncReclaims), ("direct_reclaim", s.directReclaims),
            ]
            values = named.compactMap { name, value in value.map { (name, $0) } }
        }
        return BalloonStatsReply(
            targetPages: UInt64(size.targetPages), actualPages: UInt64(size.actualPages),
            targetMib: UInt64(size.targetMiB), actualMib: UInt64(size.actualMiB), values: values)
    }

    // MARK: - Logger, metrics, serial, VM state

    private func putLogger(_ logger: LoggerConfig) -> Reply {
        let already = state.withLock { state -> Bool in
            defer { state.loggerConfigured = true }
            return state.loggerConfigured
        }
        if already { return .badRequest("The logger was already configured; it can be set once.") }
        if let problem = configureLogger(logger) {
            state.withLock { $0.loggerConfigured = false }
            return .badRequest(problem)
        }
        state.withLock { $0.pending.logger = logger }
        return .noContent
    }

    private func putMetrics(_ config: MetricsConfig) -> Reply {
        if let problem = metrics.configure(path: config.metricsPath) { return .badRequest(problem) }
        state.withLock { $0.pending.metrics = config }
        return .noContent
    }

    private func putSerial(_ serial: SerialDevice) -> Reply {
        if serial.rateLimiter != nil {
            return .badRequest("rate_limiter: serial rate limiting is not supported by swiftvm; output that "
                + "cannot be written in time is dropped and counted instead.")
        }
        return preBoot { pending in
            pending.serialOutPath = serial.serialOutPath
            return .noContent
        }
    }

    private func patchVM(_ change: VmStateChange) -> Reply {
        guard let vm else { return .badRequest(Self.postBootOnly) }
        switch change.state {
        case .paused:
            do { try vm.pause() } catch { return .badRequest(error.message) }
        case .resumed:
            guard vm.state == .paused else { return .badRequest("The microVM is not paused.") }
            vm.resume()
        }
        return .noContent
    }

    private func fullConfiguration() -> FullVmConfiguration {
        state.withLock { state in
            let pending = state.pending
            var cpuConfig: JSONValue?
            if let json = pending.cpuConfig { cpuConfig = try? JSONParser.parse(json, source: "cpu-config") }
            return FullVmConfiguration(
                bootSource: pending.bootSource, machineConfig: pending.machine, cpuConfig: cpuConfig,
                drives: pending.drives, networkInterfaces: pending.networkInterfaces, vsock: pending.vsock,
                balloon: pending.balloon, entropy: pending.entropy, logger: pending.logger,
                metrics: pending.metrics, mmdsConfig: nil)
        }
    }

    // MARK: - Into swiftvm's model

    static func vmConfig(_ pending: Pending) throws(VMMError) -> VMConfig {
        guard let boot = pending.bootSource else {
            throw VMMError(.usage, "Cannot start microvm that was not configured: PUT /boot-source first.")
        }
        var config = VMConfig(
            kernelPath: boot.kernelImagePath, initrdPath: boot.initrdPath,
            commandLine: boot.bootArgs ?? VMConfig.defaultCommandLine, vcpuCount: pending.machine.vcpuCount,
            memoryMiB: pending.machine.memSizeMib)
        config.serialOutput = pending.serialOutPath.map { .file($0) } ?? .standardOutput
        config.cpuTemplateJSON = pending.cpuConfig
        do {
            config.drives = try pending.drives.map(driveConfig)
            config.netInterfaces = try pending.networkInterfaces.map(netConfig)
        } catch { throw VMMError(.usage, error.description) }
        config.vsock = pending.vsock.map { VsockConfig(guestCID: $0.guestCid, udsPath: $0.udsPath) }
        config.balloon = pending.balloon.map(balloonConfig)
        // Firecracker attaches an entropy device only when asked to.
        config.entropyDevice = pending.entropy != nil
        do { config.entropyRateLimiter = try rateLimiterConfig(pending.entropy?.rateLimiter, field: "entropy.rate_limiter") } catch {
            throw VMMError(.usage, error.description)
        }
        do { try config.validate() } catch { throw VMMError(.usage, error.description) }
        return config
    }

    /// Firecracker checks files when they are configured; so does swiftvm,
    /// so that a wrong path is a 400 on the request that named it.
    static func checkReadable(_ path: String, _ what: String) -> String? {
        var info = stat()
        guard stat(path, &info) == 0 else {
            return "The \(what) \(path) cannot be used: \(String(cString: strerror(errno)))."
        }
        if info.st_mode & S_IFMT == S_IFDIR { return "The \(what) \(path) is a directory." }
        guard access(path, R_OK) == 0 else { return "The \(what) \(path) is not readable: \(String(cString: strerror(errno)))." }
        return nil
    }
}
