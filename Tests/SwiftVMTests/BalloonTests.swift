import Foundation
import SwiftVM
import Testing

/// The balloon end to end: the test guest's driver inflates by what the host
/// asks while the VM runs, the VMM's resident memory drops by as much, and it
/// deflates when the host lowers the target.
@Suite("Balloon", .serialized, .enabled(if: SwiftVMProcess.kvmAvailable, "needs a usable /dev/kvm"))
struct BalloonTests {
    static let memoryMiB = 240

    static func guest() throws -> String {
        try #require(SwiftVMProcess.testGuest, "the test guest could not be built (make -C Tests/TestGuest)")
    }

    /// The VMM's resident memory, two ways: guest RAM the host backs (mincore
    /// over the guest's mapping) and the whole process (VmRSS).
    struct Resident: CustomStringConvertible {
        var guestRAM: UInt64
        var process: UInt64

        init(_ vm: MicroVM) {
            guestRAM = vm.residentGuestMemoryBytes
            process = Self.processRSS()
        }

        static func processRSS() -> UInt64 {
            guard let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8),
                let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmRSS:") }),
                let kib = UInt64(line.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first ?? "")
            else { return 0 }
            return kib * 1024
        }

        var description: String { "guest RAM \(Self.mib(guestRAM)), process VmRSS \(Self.mib(process))" }

        static func mib(_ bytes: UInt64) -> String {
            let tenths = (bytes * 10 + (1 << 19)) >> 20
            return "\(tenths / 10).\(tenths % 10) MiB"
        }

        static func mib(_ bytes: Int64) -> String { (bytes < 0 ? "-" : "+") + mib(bytes.magnitude) }
    }

    static func change(_ from: UInt64, _ to: UInt64) -> Int64 { Int64(bitPattern: to &- from) }

    static func await(_ console: ConsoleCapture, _ text: String, seconds: Double = 60) -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        while !console.text.contains(text) {
            if Date() > deadline || console.text.contains("RESULT ") { return console.text.contains(text) }
            usleep(10_000)
        }
        return true
    }

    @Test("the guest inflates by the target the host sets while it runs, the VMM's resident memory drops by as much, and it deflates when the target is lowered")
    func inflateAndDeflate() throws {
        let console = ConsoleCapture()
        var config = VMConfig(
            kernelPath: try Self.guest(),
            commandLine: "console=ttyS0 reboot=k testguest.virtio=balloon testguest.mem_mib=\(Self.memoryMiB) "
                + "testguest.balloon=oom,stats,reporting testguest.balloon_touch_mib=64 testguest.balloon_wait_ms=30000",
            memoryMiB: Self.memoryMiB, serialOutput: .sink(console))
        config.entropyDevice = false
        config.consoleSilenceWarningSeconds = nil
        config.balloon = BalloonConfig(targetMiB: 0, deflateOnOOM: true, statsPollingSeconds: 1, freePageReporting: true)
        let vm = try MicroVM(config: config)
        #expect(vm.hasBalloon)
        #expect(try vm.balloonSize() == BalloonSize(targetPages: 0, actualPages: 0))
        try vm.start()
        var running = true
        defer {
            if running {
                vm.stop("test over")
                vm.wait()
            }
        }

        // 64 MiB written by the guest: the host backs it.
        try #require(Self.await(console, "BALLOON TOUCHED 16384"), "console:\n\(console.text)")
        let touched = Resident(vm)
        let reported = try vm.balloonCounters()
        #expect(reported.reportedFreeBytes == 2 << 20, "the guest reported its 2 MiB block before touching")

        // The host asks for 64 MiB; the guest gives exactly those pages.
        let askedAt = ContinuousClock.now
        try vm.setBalloonTarget(mib: 64)
        try #require(Self.await(console, "BALLOON INFLATED 16384"), "console:\n\(console.text)")
        let inflateTime = ContinuousClock.now - askedAt
        let inflated = Resident(vm)
        #expect(try vm.balloonSize() == BalloonSize(targetPages: 16384, actualPages: 16384))
        let afterInflate = try vm.balloonCounters()
        #expect(afterInflate.inflatedPages == 16384)
        #expect(afterInflate.discardedPages == 16384 + 512, "the inflated pages and the 2 MiB report")
        #expect(afterInflate.rejectedPFNs == 0)
        #expect(afterInflate.rejectedRequests == 0)
        #expect(afterInflate.discardFailures == 0)
        #expect(afterInflate.discardCalls <= 64 + 1, "one madvise per 256-PFN request at most")

        let guestDrop = Self.change(inflated.guestRAM, touched.guestRAM)
        #expect(guestDrop >= 63 << 20, "guest RAM backed by the host fell by \(Resident.mib(guestDrop)), expected 64 MiB")
        let processDrop = Self.change(inflated.process, touched.process)
        // Other suites may allocate in this process meanwhile; the guest RAM
        // figure above is the exact one.
        #expect(processDrop >= 32 << 20, "process VmRSS fell by only \(Resident.mib(processDrop))")

        // The host lowers the target to 16 MiB; 48 MiB come back to the guest.
        try vm.setBalloonTarget(mib: 16)
        try #require(Self.await(console, "BALLOON DEFLATED 12288"), "console:\n\(console.text)")
        let deflated = Resident(vm)
        let afterDeflate = try vm.balloonCounters()
        #expect(afterDeflate.deflatedPages == 12288)
        #expect(afterDeflate.inflatedPages == 16384)
        #expect(try vm.balloonSize().targetMiB == 16)
        let guestRise = Self.change(inflated.guestRAM, deflated.guestRAM)
        #expect(guestRise >= 47 << 20, "the guest wrote its 48 MiB again; guest RAM rose by \(Resident.mib(guestRise))")

        try #require(Self.await(console, "RESULT "), "console:\n\(console.text)")
        let reason = vm.wait()
        running = false
        guard case .reset = reason else {
            Issue.record("expected the guest to reset, got \(reason)\n\(console.text)")
            return
        }
        #expect(console.text.contains("PASS virtio-balloon0:"), "console:\n\(console.text)")
        #expect(console.text.contains("RESULT ") && console.text.contains(" 0 failed"), "console:\n\(console.text)")

        let statistics = try #require(try vm.balloonStatistics(), "the guest never sent statistics")
        let ram = UInt64(Self.memoryMiB) << 20
        #expect(statistics.totalMemory.map { $0 > ram - (1 << 20) && $0 <= ram } == true, "total \(String(describing: statistics.totalMemory))")
        #expect(statistics.updates >= 2, "the first buffer and at least one refresh")
        #expect(statistics.minorFaults.map { $0 >= 1 } == true, "the guest counts its refreshes in tag 3")
        #expect(statistics.swapIn == nil, "the test guest does not report swap")

        print("""
            balloon figures (guest \(Self.memoryMiB) MiB):
              after the guest wrote 64 MiB:      \(touched)
              after inflating to 64 MiB:         \(inflated)  (guest RAM \(Resident.mib(-guestDrop)), process \(Resident.mib(-processDrop)); \(inflateTime) from setBalloonTarget to INFLATED)
              after deflating to 16 MiB + reuse: \(deflated)  (guest RAM \(Resident.mib(guestRise)))
              counters: inflated \(afterDeflate.inflatedPages), deflated \(afterDeflate.deflatedPages), discarded \(afterDeflate.discardedPages) pages in \(afterDeflate.discardCalls) madvise calls, reported \(afterDeflate.reportedFreeBytes) bytes free
              statistics: \(statistics.updates) updates, total \(statistics.totalMemory ?? 0), free \(statistics.freeMemory ?? 0)
            """)
    }

    @Test("the library refuses a balloon call with a reason: no balloon, a target past guest RAM, statistics turned off or on after the build")
    func apiErrors() throws {
        var config = VMConfig(kernelPath: try Self.guest(), memoryMiB: 64, serialOutput: .none)
        config.entropyDevice = false
        let plain = try MicroVM(config: config)
        #expect(!plain.hasBalloon)
        // Untyped closures: the compiler crashes on an array of typed-throws ones.
        let calls: [(String, () throws -> Void)] = [
            ("setBalloonTarget", { try plain.setBalloonTarget(mib: 1) }),
            ("balloonSize", { _ = try plain.balloonSize() }),
            ("balloonCounters", { _ = try plain.balloonCounters() }),
        ]
        for (name, call) in calls {
            do {
                try call()
                Issue.record("\(name) succeeded on a VM without a balloon")
            } catch let error as VMMError {
                #expect(error.kind == .usage)
                #expect(error.message.contains("no balloon"), "\(error.message)")
            }
        }

        config.balloon = BalloonConfig(targetMiB: 8)
        let vm = try MicroVM(config: config)
        #expect(try vm.balloonSize() == BalloonSize(targetPages: 2048, actualPages: 0))
        do {
            try vm.setBalloonTarget(mib: 65)
            Issue.record("a target above guest RAM was accepted")
        } catch {
            #expect(error.kind == .usage)
            #expect(error.message.contains("at most 64 MiB"), "\(error.message)")
        }
        #expect(throws: VMMError.self) { try vm.setBalloonTarget(mib: -1) }
        try vm.setBalloonTarget(mib: 64)
        #expect(try vm.balloonSize().targetMiB == 64)
        #expect(try vm.balloonConfig() == BalloonConfig(targetMiB: 64))
        do {
            _ = try vm.balloonStatistics()
            Issue.record("statistics were offered without a polling interval")
        } catch {
            #expect(error.message.contains("stats=SECONDS"))
        }
        do {
            try vm.setBalloonStatisticsInterval(seconds: 5)
            Issue.record("statistics were turned on after the VM was built")
        } catch {
            #expect(error.message.contains("statistics were off when the VM was built"), "\(error.message)")
        }

        config.balloon = BalloonConfig(targetMiB: 0, deflateOnOOM: true, statsPollingSeconds: 2, freePageReporting: true)
        let withStats = try MicroVM(config: config)
        #expect(try withStats.balloonStatistics() == nil, "nothing before the guest's driver sent some")
        try withStats.setBalloonStatisticsInterval(seconds: 7)
        #expect(try withStats.balloonConfig() == BalloonConfig(targetMiB: 0, deflateOnOOM: true, statsPollingSeconds: 7, freePageReporting: true))
        #expect(throws: VMMError.self) { try withStats.setBalloonStatisticsInterval(seconds: 0) }
        #expect(throws: VMMError.self) { try withStats.setBalloonStatisticsInterval(seconds: 86401) }
    }

    @Test("swiftvm run --balloon: the guest's Linux-style driver inflates to the configured target, stats and reporting negotiated")
    func commandLine() throws {
        let outcome = try SwiftVMProcess.run([
            "run", "--kernel", try Self.guest(), "--memory", "128", "--no-rng", "--no-console-input",
            "--balloon", "16,deflate-on-oom,stats=1,reporting",
            "--cmdline", "console=ttyS0 reboot=k testguest.virtio=balloon testguest.mem_mib=128 "
                + "testguest.balloon=oom,stats,reporting testguest.balloon_deflate=0",
        ])
        #expect(outcome.status == 0, "stderr:\n\(outcome.stderr)\nstdout:\n\(outcome.stdout)")
        #expect(outcome.stdout.contains("BALLOON INFLATED 4096"), "\(outcome.stdout)")
        #expect(outcome.stdout.contains("BALLOON REPORTED 2097152"), "\(outcome.stdout)")
        #expect(outcome.stdout.contains("PASS virtio-balloon0: inflated 4096 pages"), "\(outcome.stdout)")
        #expect(outcome.stdout.contains(" 0 failed"), "\(outcome.stdout)")
        #expect(!outcome.stderr.contains("virtio-balloon"), "the device complained: \(outcome.stderr)")
    }
}
