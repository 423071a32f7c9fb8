import Synchronization
import SwiftVMMemory

/// A virtio memory balloon (virtio 1.2 §5.5, device ID 5), in the manner of
/// Firecracker's: the host sets a target size, the guest's driver gives up
/// that many 4 KiB pages, and the device hands the host memory behind them
/// back to the host (`GuestMemory.discard`), so the VMM's resident memory
/// really drops.
///
/// Queues (§5.5.2), numbered by what was negotiated: inflateq (0) and
/// deflateq (1) always; statsq next with VIRTIO_BALLOON_F_STATS_VQ; then
/// reporting_vq with VIRTIO_BALLOON_F_REPORTING. free_page_vq would come
/// between them, but VIRTIO_BALLOON_F_FREE_PAGE_HINT is never offered, and
/// Linux leaves a missing queue out of the numbering rather than a hole.
///
/// Threads: `process(queue:)` and the statistics timer run on the VMM's event
/// loop; config reads and writes on vCPU threads; `setTarget` and the
/// accessors on any thread. All state is behind one lock, which is never
/// held across a system call or a guest memory access.
public final class VirtioBalloon: VirtioDevice, CountingDevice {
    /// Device feature bits (§5.5.3).
    public enum Feature {
        /// VIRTIO_BALLOON_F_MUST_TELL_HOST: never offered; deflating needs nothing from the host.
        public static let mustTellHost: UInt64 = 1 << 0
        /// VIRTIO_BALLOON_F_STATS_VQ: the statistics queue exists.
        public static let statsQueue: UInt64 = 1 << 1
        /// VIRTIO_BALLOON_F_DEFLATE_ON_OOM: the guest deflates when it runs out of memory.
        public static let deflateOnOOM: UInt64 = 1 << 2
        /// VIRTIO_BALLOON_F_FREE_PAGE_HINT: never offered.
        public static let freePageHint: UInt64 = 1 << 3
        /// VIRTIO_BALLOON_F_PAGE_POISON: never offered.
        public static let pagePoison: UInt64 = 1 << 4
        /// VIRTIO_BALLOON_F_REPORTING: the free page reporting queue exists.
        public static let pageReporting: UInt64 = 1 << 5
    }

    /// What each of the device's queues does.
    public enum QueueRole: Sendable, Equatable {
        case inflate, deflate, stats, reporting
    }

    /// How the VMM configured the device.
    public struct Settings: Sendable, Equatable {
        /// The initial target, in 4 KiB pages.
        public var targetPages: UInt32
        /// Offer VIRTIO_BALLOON_F_DEFLATE_ON_OOM.
        public var deflateOnOOM: Bool
        /// How often the guest is asked for fresh statistics; 0 leaves the
        /// statistics queue out.
        public var statsIntervalMilliseconds: Int
        /// Offer VIRTIO_BALLOON_F_REPORTING.
        public var freePageReporting: Bool

        public init(
            targetPages: UInt32, deflateOnOOM: Bool = false, statsIntervalMilliseconds: Int = 0,
            freePageReporting: Bool = false
        ) {
            self.targetPages = targetPages
            self.deflateOnOOM = deflateOnOOM
            self.statsIntervalMilliseconds = statsIntervalMilliseconds
            self.freePageReporting = freePageReporting
        }
    }

    /// The guest's latest memory statistics (§5.5.6.3), each nil until the
    /// guest reported that tag. Sizes are in bytes, the rest are counts.
    public struct Statistics: Sendable, Equatable {
        public var swapIn: UInt64?
        public var swapOut: UInt64?
        public var majorFaults: UInt64?
        public var minorFaults: UInt64?
        public var freeMemory: UInt64?
        public var totalMemory: UInt64?
        public var availableMemory: UInt64?
        public var diskCaches: UInt64?
        public var hugetlbAllocations: UInt64?
        public var hugetlbFailures: UInt64?
        /// Tags 10 to 15 come from newer drivers (Linux 6.12 and later).
        public var oomKills: UInt64?
        public var allocationStalls: UInt64?
        public var asyncScans: UInt64?
        public var directScans: UInt64?
        public var asyncReclaims: UInt64?
        public var directReclaims: UInt64?
        /// When the guest's buffer holding these values arrived.
        public var updatedAt: ContinuousClock.Instant
        /// How many buffers of statistics the guest has sent since activation.
        public var updates: UInt64

        public init(updatedAt: ContinuousClock.Instant, updates: UInt64 = 1) {
            self.updatedAt = updatedAt
            self.updates = updates
        }

        /// Sets the field for `tag`; false for a tag this device does not know.
        mutating func set(tag: UInt16, value: UInt64) -> Bool {
            switch tag {
            case 0: swapIn = value
            case 1: swapOut = value
            case 2: majorFaults = value
            case 3: minorFaults = value
            case 4: freeMemory = value
            case 5: totalMemory = value
            case 6: availableMemory = value
            case 7: diskCaches = value
            case 8: hugetlbAllocations = value
            case 9: hugetlbFailures = value
            case 10: oomKills = value
            case 11: allocationStalls = value
            case 12: asyncScans = value
            case 13: directScans = value
            case 14: asyncReclaims = value
            case 15: directReclaims = value
            default: return false
            }
            return true
        }
    }

    /// What the device has done since it was created (not reset by the driver).
    public struct Counters: Sendable, Equatable {
        /// Page frames the guest put in the balloon (well-formed PFNs in RAM).
        public var inflatedPages: UInt64 = 0
        /// Page frames the guest took back.
        public var deflatedPages: UInt64 = 0
        /// 4 KiB pages whose host memory was handed back, by inflation and by
        /// free page reports together.
        public var discardedPages: UInt64 = 0
        /// Bytes of free memory the guest reported, and the ranges they came in.
        public var reportedFreeBytes: UInt64 = 0
        public var reportedRanges: UInt64 = 0
        /// PFNs outside guest RAM, skipped one by one.
        public var rejectedPFNs: UInt64 = 0
        /// Requests refused whole (wrong direction, odd length, too long,
        /// misaligned report) and handed back untouched.
        public var rejectedRequests: UInt64 = 0
        /// madvise calls made: fewer than discarded pages once neighbouring
        /// frames are coalesced into ranges.
        public var discardCalls: UInt64 = 0
        /// madvise calls the host refused.
        public var discardFailures: UInt64 = 0

        public init() {}
    }

    /// A target the guest cannot reach.
    public enum TargetError: Error, Equatable, Sendable, CustomStringConvertible {
        case negative(mib: Int)
        case moreThanGuestMemory(requestedPages: UInt64, guestPages: UInt64)

        public var description: String {
            switch self {
            case .negative(let mib):
                "balloon target \(mib) MiB is negative; give 0 (an empty balloon) or more"
            case .moreThanGuestMemory(let requested, let guest):
                "balloon target of \(requested) pages (\(requested / 256) MiB) is more than the guest's "
                    + "\(guest) pages (\(guest / 256) MiB) of memory; give at most \(guest / 256) MiB"
            }
        }
    }

    /// Balloon page frames are 4 KiB whatever the guest's page size (§5.5.6).
    public static let pageShift: UInt64 = 12
    public static let pageSize: UInt64 = 1 << pageShift
    public static let queueSize: UInt16 = 256
    /// num_pages, actual, free_page_hint_cmd_id, poison_val: four le32 (§5.5.4).
    public static let configSize = 16
    /// PFNs one inflate or deflate request may carry; Linux sends at most 256.
    public static let maxPFNsPerRequest = 4096
    /// PFNs one pass over a queue handles before it yields to the event loop:
    /// 256 of Linux's full requests.
    public static let pfnsPerPass = 256 * 256
    /// Statistics entries one buffer may carry (Linux sends 10 to 16).
    public static let maxStatsEntries = 64
    /// One statistics entry: le16 tag, le64 value, packed (§5.5.6.3).
    public static let statsEntrySize = 10

    private static let name = "virtio-balloon"

    public let settings: Settings
    /// Guest RAM in 4 KiB pages: the largest target the device accepts.
    public let guestPages: UInt64

    private struct State {
        var target: UInt32
        var actual: UInt32 = 0
        var poison: UInt32 = 0
        var activation: VirtioActivation?
        var roles: [QueueRole] = []
        /// Bumped by every activation and reset, so a timer that fires late
        /// for an old activation does nothing.
        var epoch: UInt64 = 0
        var statsTimer: EventToken?
        /// The polling interval now; the host may change it while the guest runs.
        var statsInterval: Int
        /// The statistics buffer the device keeps until it wants new values.
        var heldStats: UInt16?
        var statistics: Statistics?
        var statsUpdates: UInt64 = 0
        var counters = Counters()
    }

    private let state: Mutex<State>

    /// - Parameters:
    ///   - settings: target and features.
    ///   - guestMemoryBytes: the size of guest RAM, which bounds the target.
    public init(settings: Settings, guestMemoryBytes: UInt64) {
        self.settings = settings
        self.guestPages = guestMemoryBytes >> Self.pageShift
        self.state = Mutex(State(target: settings.targetPages, statsInterval: settings.statsIntervalMilliseconds))
    }

    // MARK: - The host's controls

    /// The target the host asks for, in 4 KiB pages (config `num_pages`).
    public var targetPages: UInt32 { state.withLock { $0.target } }
    /// The balloon's size as the guest last reported it (config `actual`).
    public var actualPages: UInt32 { state.withLock { $0.actual } }
    /// The latest statistics, nil until the guest sent some.
    public var statistics: Statistics? { state.withLock { $0.statistics } }
    public var counters: Counters { state.withLock { $0.counters } }

    public var metricCounters: [(name: String, value: UInt64)] {
        let (c, target, actual) = state.withLock { ($0.counters, $0.target, $0.actual) }
        return [
            ("target_pages", UInt64(target)), ("actual_pages", UInt64(actual)),
            ("inflated_pages", c.inflatedPages), ("deflated_pages", c.deflatedPages),
            ("discarded_pages", c.discardedPages), ("reported_free_bytes", c.reportedFreeBytes),
            ("reported_ranges", c.reportedRanges), ("rejected_pfns", c.rejectedPFNs),
            ("rejected_requests", c.rejectedRequests), ("discard_calls", c.discardCalls),
            ("discard_failures", c.discardFailures),
        ]
    }
    /// The queue roles of the current activation, by queue index; empty
    /// before the driver sets DRIVER_OK.
    public var activeQueueRoles: [QueueRole] { state.withLock { $0.roles } }

    /// Sets a new target while the guest runs: num_pages changes, then a
    /// configuration change interrupt tells the driver to inflate or deflate
    /// towards it (§5.5.6). Before the driver is ready the new value simply
    /// waits in the config space, where the driver reads it at start.
    public func setTarget(pages: UInt64) throws(TargetError) {
        guard pages <= guestPages, let value = UInt32(exactly: pages) else {
            throw .moreThanGuestMemory(requestedPages: pages, guestPages: guestPages)
        }
        let notifier = state.withLock { s -> VirtioNotifier? in
            guard s.target != value else { return nil }
            s.target = value
            return s.activation?.notifier
        }
        notifier?.signalConfigChange()
    }

    /// `setTarget(pages:)` in MiB.
    public func setTarget(mib: Int) throws(TargetError) {
        guard mib >= 0 else { throw .negative(mib: mib) }
        let (pages, overflow) = UInt64(mib).multipliedReportingOverflow(by: 256)
        try setTarget(pages: overflow ? .max : pages)
    }

    /// How often the guest is asked for fresh statistics, in milliseconds; 0
    /// when the statistics queue is off.
    public var statisticsIntervalMilliseconds: Int { state.withLock { $0.statsInterval } }

    /// Changes the statistics polling interval while the guest runs (the next
    /// request comes one new interval from now). Statistics cannot be turned
    /// on or off after the device was built: whether the queue exists was
    /// settled by the features the driver negotiated (§5.5.3).
    public func setStatisticsInterval(milliseconds: Int) throws(StatisticsIntervalError) {
        guard settings.statsIntervalMilliseconds > 0 else { throw .statisticsOff }
        guard milliseconds > 0 else { throw .cannotTurnOff }
        let current = state.withLock { s -> (any EventRegistry, UInt64)? in
            s.statsInterval = milliseconds
            guard let events = s.activation?.events, s.roles.contains(.stats) else { return nil }
            return (events, s.epoch)
        }
        if let (events, epoch) = current { armStatisticsTimer(events, epoch: epoch) }
    }

    /// Why the statistics interval cannot change.
    public enum StatisticsIntervalError: Error, Equatable, Sendable, CustomStringConvertible {
        case statisticsOff
        case cannotTurnOff

        public var description: String {
            switch self {
            case .statisticsOff:
                "balloon statistics were off when the VM was built, so the guest has no statistics queue; "
                    + "give a polling interval when building the VM to use them"
            case .cannotTurnOff:
                "a balloon statistics interval must be 1 or more; statistics cannot be turned off while the VM runs"
            }
        }
    }

    /// Hands the statistics buffer back to the guest, which answers with a
    /// fresh one (§5.5.6.3). The timer does this every polling interval; a
    /// caller may ask sooner. Returns false when the device holds no buffer
    /// (the guest has not answered the previous request yet).
    @discardableResult
    public func requestStatistics() -> Bool {
        requestStatistics(epoch: nil)
    }

    // MARK: - VirtioDevice

    public var deviceType: UInt32 { VirtioDeviceType.balloon }

    public var offeredFeatures: UInt64 {
        var features = VirtioFeature.version1 | VirtioFeature.eventIndex
        if settings.deflateOnOOM { features |= Feature.deflateOnOOM }
        if settings.statsIntervalMilliseconds > 0 { features |= Feature.statsQueue }
        if settings.freePageReporting { features |= Feature.pageReporting }
        return features
    }

    /// Every queue the offered features could bring; which index plays which
    /// role is settled at activation.
    public var queueMaxSizes: [UInt16] {
        Self.queueRoles(features: offeredFeatures).map { _ in Self.queueSize }
    }

    /// The queues, in index order, for the negotiated `features` (§5.5.2).
    public static func queueRoles(features: UInt64) -> [QueueRole] {
        var roles: [QueueRole] = [.inflate, .deflate]
        if features & Feature.statsQueue != 0 { roles.append(.stats) }
        if features & Feature.pageReporting != 0 { roles.append(.reporting) }
        return roles
    }

    public func readConfig(at offset: Int, into data: UnsafeMutableRawBufferPointer) {
        let words = state.withLock { s in [s.target, s.actual, 0, s.poison] }
        var bytes = [UInt8](repeating: 0, count: Self.configSize)
        for (i, word) in words.enumerated() {
            for b in 0..<4 { bytes[4 * i + b] = UInt8(truncatingIfNeeded: word >> (8 * b)) }
        }
        for i in 0..<data.count {
            let at = offset + i
            data[i] = at >= 0 && at < Self.configSize ? bytes[at] : 0
        }
    }

    /// The driver writes `actual` (offset 4) and, with PAGE_POISON, which is
    /// not offered, `poison_val` (offset 12); num_pages and the hint command
    /// id are the device's (§5.5.4). Byte-wise, so any access width works.
    public func writeConfig(at offset: Int, from data: UnsafeRawBufferPointer) {
        var ignored = 0
        state.withLock { s in
            for (i, byte) in data.enumerated() {
                let at = offset + i
                let shift = UInt32(8 * (at & 3))
                let mask = ~(UInt32(0xff) << shift)
                switch at {
                case 4..<8: s.actual = (s.actual & mask) | UInt32(byte) << shift
                case 12..<16: s.poison = (s.poison & mask) | UInt32(byte) << shift
                default: ignored += 1
                }
            }
        }
        if ignored > 0 {
            Log.warning("\(Self.name): \(ignored) byte(s) written to read-only config at offset \(offset) ignored")
        }
    }

    public func activate(_ activation: VirtioActivation) {
        let roles = Self.queueRoles(features: activation.features)
        let (epoch, oldTimer) = state.withLock { s -> (UInt64, EventToken?) in
            s.epoch &+= 1
            s.activation = activation
            s.roles = roles
            s.heldStats = nil
            let old = s.statsTimer
            s.statsTimer = nil
            return (s.epoch, old)
        }
        if let oldTimer { activation.events?.remove(oldTimer) }
        guard let statsIndex = roles.firstIndex(of: .stats) else { return }
        // Linux primes the statistics queue with its first buffer before it
        // sets DRIVER_OK, so that kick reached no running queue: look at the
        // queue once now, on the loop thread where queues are served.
        if let events = activation.events {
            events.post { [weak self] in self?.primeStatistics(queue: statsIndex, epoch: epoch) }
            armStatisticsTimer(events, epoch: epoch)
        } else {
            primeStatistics(queue: statsIndex, epoch: epoch)
        }
    }

    public func reset() {
        let (timer, events) = state.withLock { s -> (EventToken?, (any EventRegistry)?) in
            let result = (s.statsTimer, s.activation?.events)
            s.epoch &+= 1
            s.activation = nil
            s.roles = []
            s.heldStats = nil
            s.statsTimer = nil
            // The driver starts over and reports its size again; the host's
            // target stands.
            s.actual = 0
            s.poison = 0
            return result
        }
        if let timer { events?.remove(timer) }
    }

    @discardableResult
    public func process(queue index: Int) -> Bool {
        let current = state.withLock { s -> (VirtioActivation, QueueRole)? in
            guard let activation = s.activation, s.roles.indices.contains(index) else { return nil }
            return (activation, s.roles[index])
        }
        guard let (activation, role) = current, let queue = activation.queue(at: index) else { return false }
        switch role {
        case .inflate, .deflate: return servePageFrames(queue, inflate: role == .inflate, memory: activation.memory)
        case .stats: return serveStatistics(queue, memory: activation.memory)
        case .reporting: return serveReports(queue, memory: activation.memory)
        }
    }
}

// MARK: - Inflate and deflate

extension VirtioBalloon {
    /// A run of consecutive 4 KiB page frames.
    package struct PageRun: Equatable, Sendable {
        package var first: UInt64
        package var count: UInt64

        package init(first: UInt64, count: UInt64) {
            self.first = first
            self.count = count
        }
    }

    /// What one batch of discards did.
    struct DiscardOutcome {
        var pages: UInt64 = 0
        var calls: UInt64 = 0
        var failures: UInt64 = 0
    }

    /// One bounded pass over inflateq or deflateq. Each request is one
    /// device-readable array of le32 PFNs (§5.5.6); the device writes nothing
    /// back, so each is returned with used length 0.
    private func servePageFrames(_ queue: SplitQueue, inflate: Bool, memory: GuestMemory) -> Bool {
        var budget = Self.pfnsPerPass
        for _ in 0..<VirtioActivation.requestsPerPass {
            guard budget > 0 else { return true }
            guard let chain = queue.popAvailable() else { return false }
            budget -= handlePageFrames(chain, inflate: inflate, memory: memory, label: queue.label)
            queue.addUsed(head: chain.head, length: 0)
        }
        return true
    }

    /// Validates the whole request before acting on any of it; returns the
    /// number of PFNs it carried, for the pass budget.
    private func handlePageFrames(_ chain: DescriptorChain, inflate: Bool, memory: GuestMemory, label: String) -> Int {
        let what = inflate ? "inflate" : "deflate"
        guard let pfns = readPageFrameNumbers(chain, memory: memory, what: what) else {
            state.withLock { $0.counters.rejectedRequests += 1 }
            return 1
        }
        // Copied out first: the array itself may sit in a page being inflated.
        var valid: [UInt64] = []
        valid.reserveCapacity(pfns.count)
        var rejected: UInt64 = 0
        for pfn in pfns {
            let address = GuestAddress(UInt64(pfn) << Self.pageShift)
            if memory.region(containing: address, length: Self.pageSize) != nil {
                valid.append(UInt64(pfn))
            } else {
                rejected += 1
            }
        }
        if rejected > 0 {
            Log.warning("\(Self.name): \(what) request \(chain.head) names \(rejected) page frame(s) outside guest RAM; skipped")
        }
        let outcome = inflate ? Self.discard(Self.coalesce(valid), memory: memory) : DiscardOutcome()
        state.withLock { s in
            s.counters.rejectedPFNs += rejected
            s.counters.record(outcome)
            if inflate { s.counters.inflatedPages += UInt64(valid.count) } else { s.counters.deflatedPages += UInt64(valid.count) }
        }
        return max(1, pfns.count)
    }

    /// The request's PFNs, or nil (logged) when the request is malformed:
    /// a device-writable buffer, a length that is not whole le32 values, or
    /// more than `maxPFNsPerRequest` of them.
    private func readPageFrameNumbers(_ chain: DescriptorChain, memory: GuestMemory, what: String) -> [UInt32]? {
        guard chain.writable.isEmpty else {
            Log.warning("\(Self.name): \(what) request \(chain.head) has a device-writable buffer; PFN arrays are device-readable (virtio 1.2 §5.5.6); refused")
            return nil
        }
        let length = chain.readableLength
        guard length % 4 == 0 else {
            Log.warning("\(Self.name): \(what) request \(chain.head) is \(length) bytes, not a whole number of le32 PFNs; refused")
            return nil
        }
        guard length / 4 <= UInt64(Self.maxPFNsPerRequest) else {
            Log.warning("\(Self.name): \(what) request \(chain.head) carries \(length / 4) PFNs, more than \(Self.maxPFNsPerRequest); refused")
            return nil
        }
        var pfns = [UInt32](repeating: 0, count: Int(length / 4))
        var cursor = GuestBufferCursor(memory: memory, buffers: chain.readable)
        do {
            let read = try pfns.withUnsafeMutableBytes { bytes throws(GuestMemoryError) in try cursor.read(into: bytes) }
            guard read == Int(length) else { return nil }
        } catch {
            Log.warning("\(Self.name): \(what) request \(chain.head): \(error); refused")
            return nil
        }
        return pfns.map { UInt32(littleEndian: $0) }
    }

    /// Sorts page frames and joins neighbours into runs, so one madvise
    /// covers what would otherwise be many. Duplicates collapse.
    package static func coalesce(_ frames: [UInt64]) -> [PageRun] {
        var runs: [PageRun] = []
        for frame in frames.sorted() {
            if var last = runs.last, frame <= last.first + last.count {
                last.count = max(last.count, frame - last.first + 1)
                runs[runs.count - 1] = last
            } else {
                runs.append(PageRun(first: frame, count: 1))
            }
        }
        return runs
    }

    /// Discards each run, split where it crosses from one RAM region into
    /// another and trimmed to whole host pages (on a host with pages larger
    /// than 4 KiB a lone balloon page cannot be returned).
    static func discard(_ runs: [PageRun], memory: GuestMemory) -> DiscardOutcome {
        let hostPage = UInt64(GuestMemory.hostPageSize)
        var outcome = DiscardOutcome()
        for run in runs {
            var start = run.first << pageShift
            let end = (run.first + run.count) << pageShift
            while start < end {
                // Every frame was checked to be in RAM, so a region holds `start`.
                guard let region = memory.region(containing: GuestAddress(start), length: pageSize) else { break }
                let pieceEnd = min(end, region.end)
                let alignedStart = (start + hostPage - 1) / hostPage * hostPage
                let alignedEnd = pieceEnd / hostPage * hostPage
                if alignedEnd > alignedStart {
                    outcome.calls += 1
                    do {
                        try memory.discard(at: GuestAddress(alignedStart), length: alignedEnd - alignedStart)
                        outcome.pages += (alignedEnd - alignedStart) >> pageShift
                    } catch {
                        outcome.failures += 1
                        Log.warning("\(name): \(error)")
                    }
                }
                start = pieceEnd
            }
        }
        return outcome
    }
}

extension VirtioBalloon.Counters {
    mutating func record(_ outcome: VirtioBalloon.DiscardOutcome) {
        discardedPages += outcome.pages
        discardCalls += outcome.calls
        discardFailures += outcome.failures
    }
}

// MARK: - Statistics

extension VirtioBalloon {
    /// Takes the statistics buffers the driver made available: the newest is
    /// parsed and kept, to be handed back when the device wants fresh values
    /// (§5.5.6.3). A driver that sends another while the device holds one
    /// gets the older one back at once.
    private func serveStatistics(_ queue: SplitQueue, memory: GuestMemory) -> Bool {
        for _ in 0..<VirtioActivation.requestsPerPass {
            guard let chain = queue.popAvailable() else { return false }
            let parsed = parseStatistics(chain, memory: memory)
            let previous = state.withLock { s -> UInt16? in
                let previous = s.heldStats
                s.heldStats = chain.head
                if let values = parsed {
                    s.statsUpdates += 1
                    var statistics = values
                    statistics.updates = s.statsUpdates
                    s.statistics = statistics
                } else {
                    s.counters.rejectedRequests += 1
                }
                return previous
            }
            if let previous {
                Log.warning("\(Self.name): the driver sent a statistics buffer while the device held one; the older one is returned")
                queue.addUsed(head: previous, length: 0)
            }
        }
        return true
    }

    private func parseStatistics(_ chain: DescriptorChain, memory: GuestMemory) -> Statistics? {
        guard chain.writable.isEmpty else {
            Log.warning("\(Self.name): statistics buffer \(chain.head) is device-writable; the driver fills it for the device to read (virtio 1.2 §5.5.6.3); ignored")
            return nil
        }
        let length = chain.readableLength
        guard length % UInt64(Self.statsEntrySize) == 0, length <= UInt64(Self.statsEntrySize * Self.maxStatsEntries) else {
            Log.warning("\(Self.name): statistics buffer \(chain.head) is \(length) bytes, not up to \(Self.maxStatsEntries) entries of \(Self.statsEntrySize); ignored")
            return nil
        }
        var bytes = [UInt8](repeating: 0, count: Int(length))
        var cursor = GuestBufferCursor(memory: memory, buffers: chain.readable)
        do {
            let read = try bytes.withUnsafeMutableBytes { buffer throws(GuestMemoryError) in try cursor.read(into: buffer) }
            guard read == bytes.count else { return nil }
        } catch {
            Log.warning("\(Self.name): statistics buffer \(chain.head): \(error); ignored")
            return nil
        }
        var statistics = Statistics(updatedAt: .now)
        var unknown = 0
        bytes.withUnsafeBytes { raw in
            for entry in stride(from: 0, to: raw.count, by: Self.statsEntrySize) {
                let tag = UInt16(littleEndian: raw.loadUnaligned(fromByteOffset: entry, as: UInt16.self))
                let value = UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: entry + 2, as: UInt64.self))
                if !statistics.set(tag: tag, value: value) { unknown += 1 }
            }
        }
        if unknown > 0 { Log.debug("\(Self.name): \(unknown) statistics entries with unknown tags ignored") }
        return statistics
    }

    /// (Re)starts the periodic statistics request at the current interval,
    /// replacing any timer from before, unless `epoch` is no longer current.
    private func armStatisticsTimer(_ events: any EventRegistry, epoch: UInt64) {
        let interval = state.withLock { $0.statsInterval }
        guard interval > 0 else { return }
        let token = events.addTimer(afterMilliseconds: interval, periodMilliseconds: interval) { [weak self] in
            _ = self?.requestStatistics(epoch: epoch)
        }
        let replaced = state.withLock { s -> EventToken? in
            guard s.epoch == epoch else { return token }
            let previous = s.statsTimer
            s.statsTimer = token
            return previous
        }
        if let replaced { events.remove(replaced) }
    }

    /// At activation: the buffer Linux made available before DRIVER_OK.
    private func primeStatistics(queue index: Int, epoch: UInt64) {
        let activation = state.withLock { s -> VirtioActivation? in s.epoch == epoch ? s.activation : nil }
        guard let activation, let queue = activation.queue(at: index) else { return }
        _ = serveStatistics(queue, memory: activation.memory)
        activation.settle(queue, index: index)
    }

    /// Returns the held buffer (used length 0: the device writes nothing) so
    /// the driver refills it. `epoch` nil: whatever activation is current.
    private func requestStatistics(epoch: UInt64?) -> Bool {
        let taken = state.withLock { s -> (VirtioActivation, SplitQueue, UInt16)? in
            guard epoch == nil || s.epoch == epoch, let activation = s.activation, let head = s.heldStats,
                let index = s.roles.firstIndex(of: .stats), let queue = activation.queue(at: index)
            else { return nil }
            s.heldStats = nil
            return (activation, queue, head)
        }
        guard let (activation, queue, head) = taken else { return false }
        queue.addUsed(head: head, length: 0)
        activation.signalUsedBuffers(on: queue)
        return true
    }
}

// MARK: - Free page reporting

extension VirtioBalloon {
    /// One bounded pass over reporting_vq. Each request is a scatter list of
    /// free guest memory, page-aligned and whole 4 KiB pages (Linux reports
    /// blocks of 2 MiB or more, as device-writable buffers, and waits for
    /// the chain to come back before it reuses them): the device discards
    /// every range and returns the chain with used length 0 (§5.5.6.7).
    private func serveReports(_ queue: SplitQueue, memory: GuestMemory) -> Bool {
        for _ in 0..<VirtioActivation.requestsPerPass {
            guard let chain = queue.popAvailable() else { return false }
            handleReport(chain, memory: memory)
            queue.addUsed(head: chain.head, length: 0)
        }
        return true
    }

    private func handleReport(_ chain: DescriptorChain, memory: GuestMemory) {
        var frames: [PageRun] = []
        var bytes: UInt64 = 0
        // The queue already checked every buffer lies in guest RAM; the rest
        // is checked for the whole chain before anything is discarded.
        for buffer in chain.buffers {
            let address = buffer.address.rawValue
            let length = UInt64(buffer.length)
            guard length > 0, address % Self.pageSize == 0, length % Self.pageSize == 0 else {
                Log.warning("\(Self.name): free page report \(chain.head) has a range of \(length) bytes at \(buffer.address), not whole 4 KiB pages; refused")
                state.withLock { $0.counters.rejectedRequests += 1 }
                return
            }
            frames.append(PageRun(first: address >> Self.pageShift, count: length >> Self.pageShift))
            bytes += length
        }
        let outcome = Self.discard(Self.merge(frames), memory: memory)
        state.withLock { s in
            s.counters.reportedFreeBytes += bytes
            s.counters.reportedRanges += UInt64(chain.buffers.count)
            s.counters.record(outcome)
        }
    }

    /// Sorts runs and joins those that touch or overlap.
    package static func merge(_ runs: [PageRun]) -> [PageRun] {
        var merged: [PageRun] = []
        for run in runs.sorted(by: { $0.first < $1.first }) {
            if var last = merged.last, run.first <= last.first + last.count {
                last.count = max(last.count, run.first + run.count - last.first)
                merged[merged.count - 1] = last
            } else {
                merged.append(run)
            }
        }
        return merged
    }
}
