import SwiftVMDevices

/// The balloon's size as the host asked for it and as the guest reports it.
/// Balloon pages are 4 KiB whatever the guest's page size.
public struct BalloonSize: Sendable, Equatable {
    /// The target the host set (Firecracker's `amount_mib`), in pages.
    public var targetPages: Int
    /// The balloon's size as the guest's driver last wrote it, in pages.
    public var actualPages: Int

    public init(targetPages: Int, actualPages: Int) {
        self.targetPages = targetPages
        self.actualPages = actualPages
    }

    public var targetMiB: Int { targetPages / 256 }
    public var actualMiB: Int { actualPages / 256 }
}

/// The guest's memory statistics from the balloon's statistics queue
/// (virtio 1.2 §5.5.6.3, tags of §5.5.6.4). A field is nil when the guest's
/// driver does not report it. Sizes are bytes; the rest are counts since the
/// guest booted.
public struct BalloonStatistics: Sendable, Equatable {
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
    /// Reported by newer guests (Linux 6.12 and later) only.
    public var oomKills: UInt64?
    public var allocationStalls: UInt64?
    public var asyncScans: UInt64?
    public var directScans: UInt64?
    public var asyncReclaims: UInt64?
    public var directReclaims: UInt64?
    /// When the guest sent these values.
    public var updatedAt: ContinuousClock.Instant
    /// How many times the guest has sent statistics since its driver started.
    public var updates: UInt64

    init(_ device: VirtioBalloon.Statistics) {
        swapIn = device.swapIn
        swapOut = device.swapOut
        majorFaults = device.majorFaults
        minorFaults = device.minorFaults
        freeMemory = device.freeMemory
        totalMemory = device.totalMemory
        availableMemory = device.availableMemory
        diskCaches = device.diskCaches
        hugetlbAllocations = device.hugetlbAllocations
        hugetlbFailures = device.hugetlbFailures
        oomKills = device.oomKills
        allocationStalls = device.allocationStalls
        asyncScans = device.asyncScans
        directScans = device.directScans
        asyncReclaims = device.asyncReclaims
        directReclaims = device.directReclaims
        updatedAt = device.updatedAt
        updates = device.updates
    }
}

/// What the balloon device has done since the VM was built.
public struct BalloonCounters: Sendable, Equatable {
    /// Pages the guest put in the balloon, and took back.
    public var inflatedPages: UInt64
    public var deflatedPages: UInt64
    /// 4 KiB pages whose host memory went back to the host (inflated pages and
    /// free page reports together).
    public var discardedPages: UInt64
    /// Free memory the guest reported (free page reporting), in bytes, and the
    /// number of ranges it came in.
    public var reportedFreeBytes: UInt64
    public var reportedRanges: UInt64
    /// Page numbers outside guest RAM that the device skipped.
    public var rejectedPFNs: UInt64
    /// Malformed requests the device handed back untouched.
    public var rejectedRequests: UInt64
    /// madvise calls made for those pages (neighbouring pages share one).
    public var discardCalls: UInt64
    /// Ranges the host refused to take back (madvise failed).
    public var discardFailures: UInt64

    init(_ device: VirtioBalloon.Counters) {
        inflatedPages = device.inflatedPages
        deflatedPages = device.deflatedPages
        discardedPages = device.discardedPages
        reportedFreeBytes = device.reportedFreeBytes
        reportedRanges = device.reportedRanges
        rejectedPFNs = device.rejectedPFNs
        rejectedRequests = device.rejectedRequests
        discardCalls = device.discardCalls
        discardFailures = device.discardFailures
    }

    public var discardedBytes: UInt64 { discardedPages * 4096 }
}

extension MicroVM {
    /// Whether the VM was built with a balloon (`VMConfig.balloon`).
    public var hasBalloon: Bool { machine.devices.balloon != nil }

    /// Asks the guest to grow or shrink its balloon to `mib` MiB, at any time:
    /// before the guest's driver starts (it reads the target then) or while
    /// it runs (a configuration change interrupt tells it). The guest gives
    /// the pages at its own pace; `balloonSize()` shows how far it got.
    ///
    /// - Throws: `VMMError` of kind `.usage` when the VM has no balloon, or
    ///   the target is negative or more than the guest's memory.
    public func setBalloonTarget(mib: Int) throws(VMMError) {
        let balloon = try requireBalloon()
        do { try balloon.setTarget(mib: mib) } catch {
            throw VMMError(.usage, error.description)
        }
    }

    /// The balloon's target and the size the guest reports.
    public func balloonSize() throws(VMMError) -> BalloonSize {
        let balloon = try requireBalloon()
        return BalloonSize(targetPages: Int(balloon.targetPages), actualPages: Int(balloon.actualPages))
    }

    /// The guest's latest memory statistics, or nil until its driver sent
    /// the first ones.
    ///
    /// - Throws: `VMMError` of kind `.usage` when the VM has no balloon or
    ///   the balloon was built without a statistics interval.
    public func balloonStatistics() throws(VMMError) -> BalloonStatistics? {
        let balloon = try requireBalloon()
        guard balloon.settings.statsIntervalMilliseconds > 0 else {
            throw VMMError(.usage, "balloon statistics are off; give the balloon a polling interval "
                + "(--balloon MIB,stats=SECONDS, or BalloonConfig.statsPollingSeconds) when building the VM")
        }
        return balloon.statistics.map(BalloonStatistics.init)
    }

    /// The balloon as configured, with the target and statistics interval
    /// the host set since (what Firecracker's `GET /balloon` shows).
    public func balloonConfig() throws(VMMError) -> BalloonConfig {
        let balloon = try requireBalloon()
        return BalloonConfig(
            targetMiB: Int(balloon.targetPages) / 256, deflateOnOOM: balloon.settings.deflateOnOOM,
            statsPollingSeconds: balloon.statisticsIntervalMilliseconds / 1000,
            freePageReporting: balloon.settings.freePageReporting)
    }

    /// Changes how often the guest is asked for statistics, while it runs.
    ///
    /// - Throws: `VMMError` of kind `.usage` when the VM has no balloon, was
    ///   built without statistics (they cannot be turned on later), or
    ///   `seconds` is not 1 to 86400 (they cannot be turned off either).
    public func setBalloonStatisticsInterval(seconds: Int) throws(VMMError) {
        let balloon = try requireBalloon()
        let maxSeconds = 24 * 60 * 60
        guard seconds <= maxSeconds else {
            throw VMMError(.usage, "balloon statistics interval \(seconds) s is too long; give at most \(maxSeconds) s (a day)")
        }
        do { try balloon.setStatisticsInterval(milliseconds: seconds * 1000) } catch {
            throw VMMError(.usage, error.description)
        }
    }

    /// What the balloon has done: pages inflated, deflated and handed back
    /// to the host, free memory reported, and what the guest got wrong.
    public func balloonCounters() throws(VMMError) -> BalloonCounters {
        BalloonCounters(try requireBalloon().counters)
    }

    /// Bytes of guest RAM the host backs right now (from mincore(2) over the
    /// guest's mapping): what the guest has touched, less what the balloon
    /// and free page reporting gave back. Works with or without a balloon.
    public var residentGuestMemoryBytes: UInt64 { machine.memory.residentBytes() }

    private func requireBalloon() throws(VMMError) -> VirtioBalloon {
        guard let balloon = machine.devices.balloon else {
            throw VMMError(.usage, "this VM has no balloon; build it with one (--balloon MIB, or VMConfig.balloon = BalloonConfig(targetMiB: ...))")
        }
        return balloon
    }
}
