import Foundation
import SwiftVMAPI
@testable import SwiftVM
import Testing

/// Rate limiters as the CLI spells them: `bw=`/`ops=` on `--drive`, `rx-bw=`,
/// `rx-ops=`, `tx-bw=`, `tx-ops=` on `--net`, and `--rng-limit`.
@Suite("rate limiter options")
struct RateLimiterOptionTests {
    @Test func driveKeysParseIntoBuckets() throws {
        let drive = try DriveConfig.parse("id=data,path=/tmp/d.img,bw=1M/1000,ops=200/1000/50")
        #expect(drive.rateLimiter == RateLimiterConfig(
            bandwidth: TokenBucketConfig(size: 1 << 20, refillTimeMilliseconds: 1000),
            ops: TokenBucketConfig(size: 200, oneTimeBurst: 50, refillTimeMilliseconds: 1000)))
        #expect(try DriveConfig.parse("id=data,path=/tmp/d.img").rateLimiter == nil)
        let sized = try DriveConfig.parse("id=d,path=/x,bw=64k/100/2G")
        #expect(sized.rateLimiter?.bandwidth == TokenBucketConfig(size: 64 << 10, oneTimeBurst: 2 << 30, refillTimeMilliseconds: 100))
        #expect(sized.rateLimiter?.ops == nil)
    }

    @Test func netKeysParseIntoTwoLimiters() throws {
        let net = try NetConfig.parse("id=eth0,tap=tap0,rx-bw=10M/1000,tx-ops=1000/1000")
        #expect(net.rxRateLimiter == RateLimiterConfig(bandwidth: TokenBucketConfig(size: 10 << 20, refillTimeMilliseconds: 1000)))
        #expect(net.txRateLimiter == RateLimiterConfig(ops: TokenBucketConfig(size: 1000, refillTimeMilliseconds: 1000)))
        #expect(try NetConfig.parse("id=eth0,tap=tap0").rxRateLimiter == nil)
    }

    @Test func theEntropyLimit() throws {
        #expect(try RateLimiterConfig.parseEntropyLimit("bw=4K/100") == RateLimiterConfig(
            bandwidth: TokenBucketConfig(size: 4096, refillTimeMilliseconds: 100)))
        #expect(try RateLimiterConfig.parseEntropyLimit("ops=10/1000,bw=1K/10").ops?.size == 10)
    }

    @Test("bad limits name the option, the key and the form", arguments: [
        ("--drive", "id=d,path=/x,bw=fast", "bw=fast is not SIZE/REFILL_MS[/BURST] (e.g. bw=1M/1000"),
        ("--drive", "id=d,path=/x,bw=1M", "bw=1M is not SIZE/REFILL_MS[/BURST]"),
        ("--drive", "id=d,path=/x,ops=10/1000/5/5", "ops=10/1000/5/5 is not SIZE/REFILL_MS[/BURST] (e.g. ops=1000/1000"),
        ("--drive", "id=d,path=/x,bw=0/1000", "the size must be above 0 (leave bw= out for no limit)"),
        ("--drive", "id=d,path=/x,ops=10/0", "the refill time must be at least 1 ms"),
        ("--drive", "id=d,path=/x,bw=1M/99999999999999999", "refill time 99999999999999999 ms is too long"),
        ("--drive", "id=d,path=/x,bw=99999999999G/1", "bw=99999999999G/1 is not SIZE/REFILL_MS"),
        ("--drive", "id=d,path=/x,rate=1M/1", "unknown field \"rate\"; expected id=, path=, cache=, engine=, partuuid=, bw=, ops="),
        ("--net", "id=eth0,tap=tap0,rx-bw=-1/100", "rx-bw=-1/100 is not SIZE/REFILL_MS"),
        ("--net", "id=eth0,tap=tap0,bw=1M/100", "unknown field \"bw\""),
        ("--rng-limit", "bw=1M", "--rng-limit bw=1M: bw=1M is not SIZE/REFILL_MS[/BURST]"),
        ("--rng-limit", "", "give bw=SIZE/REFILL_MS[/BURST], ops=SIZE/REFILL_MS[/BURST] or both"),
        ("--rng-limit", "iops=5/5", "unknown field \"iops\""),
    ] as [(String, String, String)])
    func badLimits(option: String, spec: String, expected: String) {
        let message: String
        do {
            switch option {
            case "--drive": _ = try DriveConfig.parse(spec)
            case "--net": _ = try NetConfig.parse(spec)
            default: _ = try RateLimiterConfig.parseEntropyLimit(spec)
            }
            Issue.record("\(option) \(spec) was accepted")
            return
        } catch {
            message = error.description
        }
        #expect(message.contains(expected), "\(message)")
        #expect(message.hasPrefix(option), "\(message)")
    }

    @Test("swiftvm run refuses a bad limit with status 64 before it opens anything")
    func runRefusesABadLimit() throws {
        let outcome = try SwiftVMProcess.run(["run", "--kernel", "/nonexistent", "--rng-limit", "bw=lots"])
        #expect(outcome.status == 64, "stderr: \(outcome.stderr)")
        #expect(outcome.stderr.contains("--rng-limit bw=lots: bw=lots is not SIZE/REFILL_MS[/BURST]"), "\(outcome.stderr)")
    }
}

/// Rate limiters on a running test guest, through `swiftvm run` and
/// Firecracker's API.
@Suite("rate limiters on a running guest", .serialized, .enabled(if: SwiftVMProcess.kvmAvailable, "needs a usable /dev/kvm"))
struct RateLimiterGuestTests {
    static let benchArguments = "testguest.mode=blkbench testguest.bench=seqread testguest.bench_mib=4"

    /// The guest's boot-timer write, which blkbench makes just before its
    /// first request, in seconds since swiftvm started.
    static func bootSeconds(_ stderr: String) -> Double? {
        guard let line = stderr.split(separator: "\n").first(where: { $0.contains("Guest-boot-time = ") }),
            let value = line.split(separator: "=").last?.split(separator: " ").first, let micros = Double(value)
        else { return nil }
        return micros / 1e6
    }

    @Test("--drive bw=1M/1000: 4 MiB of 4 KiB reads take about 3 s after the first MiB (the bucket's own)")
    func blockBandwidthFromTheCommandLine() throws {
        let guest = try APITests.guest()
        let image = try SwiftVMProcess.temporaryFile([UInt8](repeating: 0, count: 8 << 20), name: "limited")
        defer { unlink(image) }
        let started = Date()
        let outcome = try SwiftVMProcess.run([
            "run", "--kernel", guest, "--no-rng", "--no-preflight", "--no-console-input",
            "--drive", "id=bench,path=\(image),bw=1M/1000",
            "--cmdline", "console=ttyS0 \(Self.benchArguments)",
        ], timeout: 60)
        let wall = Date().timeIntervalSince(started)
        #expect(outcome.status == 0, "stderr: \(outcome.stderr)")
        #expect(outcome.stdout.contains("BENCH seqread 1024 requests, 4194304 bytes, 0 failed"), "\(outcome.stdout)")
        let boot = try #require(Self.bootSeconds(outcome.stderr), "no boot time in: \(outcome.stderr)")
        let workload = wall - boot
        // 1 MiB comes from the full bucket, plus what it refilled while the
        // guest booted; the other ~3 MiB at 1 MiB/s. Unlimited, the same
        // reads take a fraction of a second.
        #expect(workload >= 2.0, "4 MiB read in \(workload) s (boot \(boot) s, wall \(wall) s)")
        print("rate limiter: 4 MiB read at bw=1M/1000 in \(String(format: "%.2f", workload)) s after a \(String(format: "%.2f", boot)) s boot")
    }

    @Test("API: rate limiters are accepted at PUT, shown by GET /vm/config, merged by PATCH before boot")
    func configuration() throws {
        let vmm = try FirecrackerProcessUnderTest()
        let api = try APITests.configured(vmm)
        let image = vmm.path("disk.img")
        _ = FileManager.default.createFile(atPath: image, contents: Data(count: 1 << 20))
        let drive = try api.request("PUT", "/drives/data", body: """
            {"drive_id": "data", "path_on_host": "\(image)", "is_root_device": false,
             "rate_limiter": {"bandwidth": {"size": 1048576, "one_time_burst": 0, "refill_time": 1000},
                              "ops": {"size": 0, "refill_time": 100}}}
            """)
        #expect(drive.status == 204, "\(drive.text)")
        let net = try api.request("PUT", "/network-interfaces/eth0", body: """
            {"iface_id": "eth0", "host_dev_name": "tap-rl0",
             "rx_rate_limiter": {"ops": {"size": 1000, "one_time_burst": 100, "refill_time": 1000}}}
            """)
        #expect(net.status == 204, "\(net.text)")
        #expect(try api.request("PUT", "/entropy", body: #"{"rate_limiter": {"bandwidth": {"size": 4096, "refill_time": 100}}}"#).status == 204)
        #expect(try api.request("PATCH", "/network-interfaces/eth0", body: """
            {"iface_id": "eth0", "tx_rate_limiter": {"bandwidth": {"size": 65536, "refill_time": 10}}}
            """).status == 204)

        let config = try api.request("GET", "/vm/config").json
        let driveLimiter = ((config["drives"] as? [[String: Any]])?.first?["rate_limiter"]) as? [String: Any]
        let bandwidth = try #require(driveLimiter?["bandwidth"] as? [String: Any], "\(config)")
        #expect(bandwidth["size"] as? Int == 1_048_576)
        #expect(bandwidth["refill_time"] as? Int == 1000)
        #expect(bandwidth["one_time_burst"] == nil, "a burst of 0 is not shown, as in Firecracker")
        #expect(driveLimiter?["ops"] == nil, "a bucket of size 0 limits nothing and is not shown")
        let iface = try #require((config["network-interfaces"] as? [[String: Any]])?.first)
        let rx = iface["rx_rate_limiter"] as? [String: Any]
        #expect((rx?["ops"] as? [String: Any])?["one_time_burst"] as? Int == 100)
        let tx = iface["tx_rate_limiter"] as? [String: Any]
        #expect((tx?["bandwidth"] as? [String: Any])?["size"] as? Int == 65536, "PATCH before boot added it")
        #expect(rx != nil, "and kept the receive limiter")
        let entropy = config["entropy"] as? [String: Any]
        #expect(((entropy?["rate_limiter"] as? [String: Any])?["bandwidth"] as? [String: Any])?["size"] as? Int == 4096)

        // A bucket given with size 0 turns that limit off.
        #expect(try api.request("PATCH", "/drives/data", body: """
            {"drive_id": "data", "rate_limiter": {"bandwidth": {"size": 0, "refill_time": 0}}}
            """).status == 204)
        let patched = try api.request("GET", "/vm/config").json
        #expect((patched["drives"] as? [[String: Any]])?.first?["rate_limiter"] == nil)
    }

    @Test(
        "API: a bad rate limiter is a 400 naming the field",
        arguments: [
            ("/drives/d", #"{"drive_id": "d", "path_on_host": "IMAGE", "is_root_device": false, "rate_limiter": {"bandwidth": {"size": -1, "refill_time": 100}}}"#,
             "rate_limiter.bandwidth.size"),
            ("/drives/d", #"{"drive_id": "d", "path_on_host": "IMAGE", "is_root_device": false, "rate_limiter": {"ops": {"size": 10}}}"#,
             "refill_time"),
            ("/drives/d", #"{"drive_id": "d", "path_on_host": "IMAGE", "is_root_device": false, "rate_limiter": {"ops": {"size": 10, "refill_time": 1, "burst": 5}}}"#,
             "unknown field \"burst\""),
            ("/drives/d", #"{"drive_id": "d", "path_on_host": "IMAGE", "is_root_device": false, "rate_limiter": {"bandwidth": {"size": 10, "refill_time": 18446744073709552}}}"#,
             "rate_limiter.bandwidth.refill_time"),
            ("/network-interfaces/eth0", #"{"iface_id": "eth0", "host_dev_name": "tap0", "tx_rate_limiter": {"ops": {"size": "many", "refill_time": 1}}}"#,
             "tx_rate_limiter.ops.size"),
            ("/network-interfaces/eth0", #"{"iface_id": "eth0", "host_dev_name": "tap0", "rx_rate_limiter": {"bw": {}}}"#,
             "unknown field \"bw\""),
            ("/entropy", #"{"rate_limiter": {"ops": {"size": 1, "refill_time": 1.5}}}"#, "rate_limiter.ops.refill_time"),
            ("/serial", #"{"rate_limiter": {"size": 1, "refill_time": 1}}"#, "rate_limiter: serial rate limiting is not supported"),
        ] as [(String, String, String)])
    func badLimiters(path: String, body: String, expected: String) throws {
        let vmm = try FirecrackerProcessUnderTest()
        let api = try vmm.client()
        let image = vmm.path("disk.img")
        _ = FileManager.default.createFile(atPath: image, contents: Data(count: 1 << 20))
        let response = try api.request("PUT", path, body: body.replacingOccurrences(of: "IMAGE", with: image))
        #expect(response.status == 400, "\(response.text)")
        #expect(response.fault.contains(expected), "\(response.fault)")
    }

    @Test("a config file with rate limiters on a drive and the entropy device boots; a bad one names the JSON path")
    func configFile() throws {
        let guest = try APITests.guest()
        let image = try SwiftVMProcess.temporaryFile(TestImages.pattern(sectors: 64), name: "disk")
        defer { unlink(image) }
        func write(_ text: String) throws -> String {
            let path = FileManager.default.temporaryDirectory.appendingPathComponent("swiftvm-rl-\(UUID().uuidString).json").path
            try text.write(toFile: path, atomically: true, encoding: .utf8)
            return path
        }
        let good = try write("""
            {
              "boot-source": {"kernel_image_path": "\(guest)", "boot_args": "console=ttyS0 reboot=k panic=1 testguest.mode=selftest testguest.virtio=ro,rng"},
              "drives": [{"drive_id": "scratch", "path_on_host": "\(image)", "is_root_device": false, "is_read_only": true,
                          "rate_limiter": {"bandwidth": {"size": 1048576, "refill_time": 100}, "ops": {"size": 100, "refill_time": 100}}}],
              "entropy": {"rate_limiter": {"bandwidth": {"size": 1024, "one_time_burst": 4096, "refill_time": 100}}}
            }
            """)
        defer { unlink(good) }
        let vmm = try FirecrackerProcessUnderTest(["--no-api", "--config-file", good], api: false)
        #expect(vmm.exitStatus(within: 60) == 0, "stderr: \(vmm.stderr)")
        #expect(vmm.stdout.contains("PASS virtio-blk0: id scratch"), "stdout: \(vmm.stdout)")
        #expect(vmm.stdout.contains("PASS virtio-rng1"), "stdout: \(vmm.stdout)")
        #expect(!vmm.stdout.contains("FAIL"), "stdout: \(vmm.stdout)")

        let bad = try write("""
            {"boot-source": {"kernel_image_path": "\(guest)"},
             "drives": [{"drive_id": "a", "path_on_host": "\(image)", "is_root_device": false, "rate_limiter": {"ops": {"size": true, "refill_time": 1}}}]}
            """)
        defer { unlink(bad) }
        let refused = try FirecrackerProcessUnderTest(["--no-api", "--config-file", bad], api: false)
        #expect(refused.exitStatus(within: 20) == 152, "stderr: \(refused.stderr)")
        #expect(refused.stderr.contains("drives[0].rate_limiter.ops.size"), "stderr: \(refused.stderr)")
    }

    @Test("API: PATCH /drives after boot changes the running drive's limiter: a read that would take a minute finishes at once")
    func patchAfterBoot() throws {
        let vmm = try FirecrackerProcessUnderTest()
        let api = try APITests.configured(vmm, mode: "blkbench")
        #expect(try api.request("PUT", "/boot-source", body: """
            {"kernel_image_path": "\(try APITests.guest())", "boot_args": "console=ttyS0 reboot=k panic=1 \(Self.benchArguments)"}
            """).status == 204)
        let image = vmm.path("disk.img")
        _ = FileManager.default.createFile(atPath: image, contents: Data(count: 8 << 20))
        let metrics = vmm.path("metrics.json")
        #expect(try api.request("PUT", "/metrics", body: "{\"metrics_path\": \"\(metrics)\"}").status == 204)
        // 64 KiB a second: 4 MiB would take about a minute.
        #expect(try api.request("PUT", "/drives/data", body: """
            {"drive_id": "data", "path_on_host": "\(image)", "is_root_device": false, "is_read_only": true,
             "rate_limiter": {"bandwidth": {"size": 65536, "refill_time": 1000}}}
            """).status == 204)
        #expect(try api.request("PATCH", "/drives/other", body: #"{"drive_id": "other", "rate_limiter": {}}"#).fault
            .contains("does not exist"))
        #expect(try api.request("PUT", "/actions", body: #"{"action_type": "InstanceStart"}"#).status == 204)
        // Let the guest boot and run into the limit.
        usleep(1_500_000)
        #expect(vmm.process.isRunning, "the guest finished before the limit could hold it: stdout \(vmm.stdout)")
        let bad = try api.request("PATCH", "/drives/data", body: """
            {"drive_id": "data", "rate_limiter": {"bandwidth": {"size": 1, "refill_time": -5}}}
            """)
        #expect(bad.status == 400)
        #expect(bad.fault.contains("rate_limiter.bandwidth.refill_time"), "\(bad.fault)")
        let patched = Date()
        let patch = try api.request("PATCH", "/drives/data", body: """
            {"drive_id": "data", "rate_limiter": {"bandwidth": {"size": 104857600, "refill_time": 100}}}
            """)
        #expect(patch.status == 204, "\(patch.text)")
        let config = try api.request("GET", "/vm/config").json
        let limiter = (config["drives"] as? [[String: Any]])?.first?["rate_limiter"] as? [String: Any]
        #expect((limiter?["bandwidth"] as? [String: Any])?["size"] as? Int == 104_857_600)
        #expect(vmm.exitStatus(within: 30) == 0, "stderr: \(vmm.stderr)")
        let afterPatch = Date().timeIntervalSince(patched)
        #expect(afterPatch < 20, "the guest needed \(afterPatch) s after the PATCH")
        #expect(vmm.stdout.contains("BENCH seqread 1024 requests, 4194304 bytes, 0 failed"), "\(vmm.stdout)")
        // The metrics written at the end show the drive was held back.
        let lines = ((try? String(contentsOfFile: metrics, encoding: .utf8)) ?? "").split(separator: "\n")
        let last = try #require(lines.last, "no metrics were written")
        let object = try #require(try JSONSerialization.jsonObject(with: Data(last.utf8)) as? [String: Any])
        let drive = (object["devices"] as? [String: Any])?["virtio-blk data"] as? [String: Any]
        #expect(drive?["rate_limiter_throttled_events"] as? Int ?? 0 > 0, "\(object)")
        print("rate limiter: after PATCH the guest finished in \(String(format: "%.2f", afterPatch)) s")
    }
}
