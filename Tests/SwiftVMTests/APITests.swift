import Foundation
import SwiftVMAPI
import Testing

/// A `swiftvm` started as Firecracker is (no subcommand, --api-sock), and
/// driven over its real socket the way Firecracker's clients drive it.
final class FirecrackerProcessUnderTest {
    let process = Process()
    let directory: URL
    let socket: String
    let stdoutURL: URL
    let stderrURL: URL

    init(_ arguments: [String] = [], api: Bool = true) throws {
        let binary = try #require(SwiftVMProcess.binary)
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("swiftvm-api-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        socket = directory.appendingPathComponent("api.sock").path
        stdoutURL = directory.appendingPathComponent("stdout")
        stderrURL = directory.appendingPathComponent("stderr")
        _ = FileManager.default.createFile(atPath: stdoutURL.path, contents: nil)
        _ = FileManager.default.createFile(atPath: stderrURL.path, contents: nil)
        process.executableURL = URL(fileURLWithPath: binary)
        process.arguments = (api ? ["--api-sock", socket] : []) + arguments
        process.standardOutput = try FileHandle(forWritingTo: stdoutURL)
        process.standardError = try FileHandle(forWritingTo: stderrURL)
        process.standardInput = FileHandle.nullDevice
        try process.run()
        if api {
            let deadline = Date().addingTimeInterval(20)
            // The file appears at bind(); wait until the server also listens.
            while !Self.accepts(socket) && process.isRunning && Date() < deadline { usleep(10_000) }
        }
    }

    static func accepts(_ path: String) -> Bool {
        let fd = Glibc.socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { bytes in
            for (index, byte) in path.utf8.prefix(bytes.count - 1).enumerated() { bytes[index] = byte }
        }
        return withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        } == 0
    }

    deinit {
        if process.isRunning {
            process.terminate()
            process.waitUntilExit()
        }
        try? FileManager.default.removeItem(at: directory)
    }

    var stdout: String { (try? String(contentsOf: stdoutURL, encoding: .utf8)) ?? "" }
    var stderr: String { (try? String(contentsOf: stderrURL, encoding: .utf8)) ?? "" }

    func client() throws -> APIClient { try APIClient(socketPath: socket) }

    /// Waits up to `seconds` for the process to end; its status, or nil.
    func exitStatus(within seconds: Double) -> Int32? {
        let deadline = Date().addingTimeInterval(seconds)
        while process.isRunning && Date() < deadline { usleep(10_000) }
        guard !process.isRunning else { return nil }
        return process.terminationStatus
    }

    func path(_ name: String) -> String { directory.appendingPathComponent(name).path }
}

extension APIClient.Response {
    /// The `fault_message` of an error body.
    var fault: String {
        guard let object = try? JSONSerialization.jsonObject(with: Data(body)) as? [String: Any] else { return text }
        return object["fault_message"] as? String ?? text
    }

    var json: [String: Any] { (try? JSONSerialization.jsonObject(with: Data(body)) as? [String: Any]) ?? [:] }
}

@Suite("Firecracker's API on the real socket", .serialized, .enabled(if: SwiftVMProcess.kvmAvailable, "needs a usable /dev/kvm"))
struct APITests {
    static func guest() throws -> String {
        try #require(SwiftVMProcess.testGuest, "the test guest could not be built (make -C Tests/TestGuest)")
    }

    /// A VMM configured for the test guest in `mode`, not started.
    static func configured(_ vmm: FirecrackerProcessUnderTest, mode: String = "ticker") throws -> APIClient {
        let api = try vmm.client()
        let boot = try api.request("PUT", "/boot-source", body: """
            {"kernel_image_path": "\(try guest())", "boot_args": "console=ttyS0 reboot=k panic=1 testguest.mode=\(mode)"}
            """)
        #expect(boot.status == 204, "\(boot.text)")
        let machine = try api.request("PUT", "/machine-config", body: #"{"vcpu_count": 1, "mem_size_mib": 64}"#)
        #expect(machine.status == 204, "\(machine.text)")
        return api
    }

    @Test("GET / and GET /version describe the instance before it starts")
    func instanceInfo() throws {
        let vmm = try FirecrackerProcessUnderTest(["--id", "api-test-1"])
        let api = try vmm.client()
        let info = try api.request("GET", "/")
        #expect(info.status == 200)
        #expect(info.json["id"] as? String == "api-test-1")
        #expect(info.json["state"] as? String == "Not started")
        #expect(info.json["app_name"] as? String == "Firecracker")
        let version = try api.request("GET", "/version")
        #expect(version.status == 200)
        #expect(version.json["firecracker_version"] is String)
        // Keep-alive: both answers came over one connection.
    }

    @Test("configuration requests: success, defaults and GET /vm/config")
    func configuration() throws {
        let vmm = try FirecrackerProcessUnderTest()
        let api = try Self.configured(vmm)
        let machine = try api.request("GET", "/machine-config")
        #expect(machine.json["vcpu_count"] as? Int == 1)
        #expect(machine.json["mem_size_mib"] as? Int == 64)
        #expect(try api.request("PATCH", "/machine-config", body: #"{"vcpu_count": 2}"#).status == 204)
        #expect(try api.request("GET", "/machine-config").json["vcpu_count"] as? Int == 2)
        let image = vmm.path("disk.img")
        _ = FileManager.default.createFile(atPath: image, contents: Data(count: 1 << 20))
        let drive = try api.request("PUT", "/drives/data", body: """
            {"drive_id": "data", "path_on_host": "\(image)", "is_root_device": false, "is_read_only": true}
            """)
        #expect(drive.status == 204, "\(drive.text)")
        #expect(try api.request("PUT", "/entropy", body: "{}").status == 204)
        let config = try api.request("GET", "/vm/config").json
        #expect((config["boot-source"] as? [String: Any])?["kernel_image_path"] as? String == (try Self.guest()))
        #expect((config["drives"] as? [[String: Any]])?.first?["drive_id"] as? String == "data")
        #expect((config["machine-config"] as? [String: Any])?["vcpu_count"] as? Int == 2)
    }

    @Test(
        "every error class is a 400 whose fault_message names the field or the rule",
        arguments: [
            ("PUT", "/machine-config", #"{"vcpu_count": 0, "mem_size_mib": 64}"#, "vcpu_count"),
            ("PUT", "/machine-config", #"{"vcpu_count": 1, "mem_size_mib": 64, "vcpus": 1}"#, "unknown field \"vcpus\""),
            ("PUT", "/machine-config", #"{"vcpu_count": "two", "mem_size_mib": 64}"#, "vcpu_count"),
            ("PUT", "/machine-config", #"{"vcpu_count": 1}"#, "mem_size_mib"),
            ("PUT", "/machine-config", #"{"vcpu_count": 1, "mem_size_mib": 64,}"#, "invalid JSON"),
            ("PUT", "/machine-config", #"{"vcpu_count": 1, "mem_size_mib": 64, "smt": true}"#, "smt"),
            ("PUT", "/boot-source", #"{"kernel_image_path": "/nonexistent/vmlinux"}"#, "/nonexistent/vmlinux"),
            ("PUT", "/drives/one", #"{"drive_id": "two", "path_on_host": "/tmp", "is_root_device": false}"#, "does not match"),
            ("PUT", "/network-interfaces/eth0", #"{"iface_id": "eth0", "host_dev_name": "tap0", "guest_mac": "zz"}"#, "guest_mac"),
            ("PUT", "/vsock", #"{"guest_cid": 2, "uds_path": "/tmp/v.sock"}"#, "reserved"),
            ("PUT", "/actions", #"{"action_type": "Reboot"}"#, "action_type"),
            ("PUT", "/actions", #"{"action_type": "InstanceStart"}"#, "boot-source"),
            ("PATCH", "/vm", #"{"state": "Paused"}"#, "before starting"),
            ("PUT", "/actions", #"{"action_type": "SendCtrlAltDel"}"#, "before starting"),
            ("PUT", "/logger", #"{"level": "Loud"}"#, "level"),
            ("PUT", "/logger", #"{"log_path": "/nonexistent/dir/log"}"#, "/nonexistent/dir/log"),
            ("PUT", "/metrics", #"{"metrics_path": "/nonexistent/dir/metrics"}"#, "/nonexistent/dir/metrics"),
            ("PUT", "/cpu-config", #"{"cpuid_modifiers": [{"leaf": "0x1", "subleaf": "0x0", "flags": 0, "modifiers": [{"register": "exx", "bitmap": "0b0"}]}]}"#, "cpuid_modifiers[0].modifiers[0]"),
            ("PUT", "/drives/a", #"{"drive_id": "a", "socket": "/tmp/vhost.sock", "is_root_device": false}"#, "vhost-user"),
            ("GET", "/balloon", "", "PUT /balloon first"),
            ("PUT", "/serial", #"{"serial_out_path": "/tmp/x", "rate_limiter": {}}"#, "rate_limiter"),
            ("PUT", "/balloon", #"{"amount_mib": 1000, "deflate_on_oom": false}"#, "more than"),
            ("GET", "/nonexistent", "", "Invalid request method and/or path"),
            ("DELETE", "/machine-config", "", "Invalid request method and/or path"),
            ("PUT", "/machine-config", "", "JSON body"),
        ] as [(String, String, String, String)])
    func errors(method: String, path: String, body: String, expected: String) throws {
        let vmm = try FirecrackerProcessUnderTest()
        let api = try vmm.client()
        let response = try api.request(method, path, body: body.isEmpty ? nil : body)
        #expect(response.status == 400, "\(response.text)")
        #expect(response.fault.contains(expected), "\(response.fault)")
    }

    @Test("a body over --http-api-max-payload-size is refused, and the connection serves the next request")
    func oversizeBody() throws {
        let vmm = try FirecrackerProcessUnderTest(["--http-api-max-payload-size", "100"])
        let api = try vmm.client()
        let large = "{\"kernel_image_path\": \"" + String(repeating: "a", count: 200) + "\"}"
        let response = try api.request("PUT", "/boot-source", body: large)
        #expect(response.status == 400)
        #expect(response.fault.contains("larger than the limit of 100 bytes"))
        #expect(try api.request("GET", "/").status == 200)
    }

    @Test("InstanceStart boots the guest; pre-boot requests are refused after it; pause holds the guest, resume lets it go on")
    func startPauseResume() throws {
        let vmm = try FirecrackerProcessUnderTest()
        let api = try Self.configured(vmm)
        #expect(try api.request("PUT", "/actions", body: #"{"action_type": "InstanceStart"}"#).status == 204)
        #expect(try api.request("GET", "/").json["state"] as? String == "Running")
        func ticks() -> Int { vmm.stdout.components(separatedBy: "TICK ").count - 1 }
        let deadline = Date().addingTimeInterval(30)
        while ticks() < 3 && Date() < deadline { usleep(20_000) }
        #expect(ticks() >= 3, "stdout: \(vmm.stdout) stderr: \(vmm.stderr)")

        let late = try api.request("PUT", "/boot-source", body: #"{"kernel_image_path": "/tmp"}"#)
        #expect(late.status == 400)
        #expect(late.fault.contains("not supported after starting the microVM"))
        #expect(try api.request("PUT", "/machine-config", body: #"{"vcpu_count": 1, "mem_size_mib": 64}"#).status == 400)

        #expect(try api.request("PATCH", "/vm", body: #"{"state": "Paused"}"#).status == 204)
        #expect(try api.request("GET", "/").json["state"] as? String == "Paused")
        let paused = ticks()
        usleep(400_000)
        #expect(ticks() <= paused + 1, "the paused guest kept ticking")
        #expect(try api.request("PATCH", "/vm", body: #"{"state": "Resumed"}"#).status == 204)
        let resumed = Date().addingTimeInterval(10)
        while ticks() < paused + 3 && Date() < resumed { usleep(20_000) }
        #expect(ticks() >= paused + 3)
        #expect(try api.request("PATCH", "/vm", body: #"{"state": "Resumed"}"#).fault.contains("not paused"))
    }

    @Test("the guest's reset ends the process with status 0, as Firecracker's does")
    func guestEndsProcess() throws {
        let vmm = try FirecrackerProcessUnderTest(["--boot-timer"])
        let api = try Self.configured(vmm, mode: "selftest")
        #expect(try api.request("PUT", "/actions", body: #"{"action_type": "InstanceStart"}"#).status == 204)
        #expect(vmm.exitStatus(within: 60) == 0, "stderr: \(vmm.stderr)")
        #expect(vmm.stdout.contains("RESULT"))
        #expect(vmm.stderr.contains("Guest-boot-time"))
        // The socket file goes with the process.
        #expect(!FileManager.default.fileExists(atPath: vmm.socket))
    }

    @Test("SIGTERM before and during the boot ends the process at once")
    func sigterm() throws {
        let idle = try FirecrackerProcessUnderTest()
        kill(idle.process.processIdentifier, SIGTERM)
        #expect(idle.exitStatus(within: 5) == 128 + SIGTERM)
        let busy = try FirecrackerProcessUnderTest()
        let api = try Self.configured(busy)
        #expect(try api.request("PUT", "/actions", body: #"{"action_type": "InstanceStart"}"#).status == 204)
        kill(busy.process.processIdentifier, SIGTERM)
        #expect(busy.exitStatus(within: 5) == 128 + SIGTERM, "stderr: \(busy.stderr)")
    }

    @Test("metrics: PUT /metrics, FlushMetrics writes one JSON object with API and device counters")
    func metrics() throws {
        let vmm = try FirecrackerProcessUnderTest()
        let api = try Self.configured(vmm)
        #expect(try api.request("PUT", "/actions", body: #"{"action_type": "FlushMetrics"}"#).fault.contains("PUT /metrics"))
        let path = vmm.path("metrics.json")
        #expect(try api.request("PUT", "/metrics", body: "{\"metrics_path\": \"\(path)\"}").status == 204)
        #expect(try api.request("PUT", "/entropy", body: "{}").status == 204)
        #expect(try api.request("PUT", "/actions", body: #"{"action_type": "InstanceStart"}"#).status == 204)
        // The counters below need the guest to have written to its console.
        let deadline = Date().addingTimeInterval(20)
        while !vmm.stdout.contains("\n") && Date() < deadline { usleep(20_000) }
        #expect(try api.request("PUT", "/actions", body: #"{"action_type": "FlushMetrics"}"#).status == 204)
        let lines = ((try? String(contentsOfFile: path, encoding: .utf8)) ?? "").split(separator: "\n")
        let last = try #require(lines.last, "no metrics were written")
        let object = try #require(try JSONSerialization.jsonObject(with: Data(last.utf8)) as? [String: Any])
        #expect(object["utc_timestamp_ms"] is Int)
        #expect((object["api_server"] as? [String: Any])?["status_204"] as? Int ?? 0 >= 4)
        let vcpus = try #require(object["vcpu"] as? [[String: Any]])
        #expect(vcpus.count == 1)
        #expect(vcpus[0]["exit_io_out"] as? Int ?? 0 > 0, "the guest's console writes are port I/O exits")
        #expect((object["uart"] as? [String: Any])?["bytes_out"] as? Int ?? 0 > 0)
        #expect((object["devices"] as? [String: Any])?["virtio-rng"] != nil)
    }

    @Test("a client that sends its body slowly, or disconnects mid-request, does not disturb the others; many clients at once")
    func clients() throws {
        let vmm = try FirecrackerProcessUnderTest()
        // Slow: the body arrives in pieces.
        let slow = try RawSocket(vmm.socket)
        let body = #"{"vcpu_count": 1, "mem_size_mib": 96}"#
        try slow.send("PUT /machine-config HTTP/1.1\r\nHost: x\r\nContent-Length: \(body.utf8.count)\r\n\r\n")
        for piece in body.map(String.init) {
            try slow.send(piece)
            usleep(5_000)
        }
        #expect(try slow.receiveStatusLine().contains(" 204 "))
        // Gone mid-request: half a body, then closed.
        let gone = try RawSocket(vmm.socket)
        try gone.send("PUT /machine-config HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"vcpu")
        gone.close()
        // Many at once.
        let clients = try (0..<16).map { _ in try vmm.client() }
        for client in clients { #expect(try client.request("GET", "/").status == 200) }
        #expect(try vmm.client().request("GET", "/machine-config").json["mem_size_mib"] as? Int == 96)
    }

    @Test("SendCtrlAltDel presses Ctrl-Alt-Del on the i8042 keyboard: the guest reads the scan codes and resets")
    func ctrlAltDel() throws {
        let vmm = try FirecrackerProcessUnderTest()
        let api = try Self.configured(vmm, mode: "keyboard")
        #expect(try api.request("PUT", "/actions", body: #"{"action_type": "InstanceStart"}"#).status == 204)
        let deadline = Date().addingTimeInterval(30)
        while !vmm.stdout.contains("KEYBOARD READY") && Date() < deadline { usleep(20_000) }
        let reply = try api.request("PUT", "/actions", body: #"{"action_type": "SendCtrlAltDel"}"#)
        #expect(reply.status == 204, "\(reply.text)")
        #expect(vmm.exitStatus(within: 30) == 0, "stderr: \(vmm.stderr)")
        let keys = vmm.stdout.split(separator: "\n").filter { $0.hasPrefix("KEY ") }
        #expect(keys == ["KEY 1d", "KEY 38", "KEY e0", "KEY 53"], "stdout: \(vmm.stdout)")
        #expect(vmm.stdout.contains("CTRL-ALT-DEL"))
    }

    @Test("PUT /logger: lines carry the timestamp, instance id, thread, level and origin; the logger is set once")
    func logger() throws {
        let vmm = try FirecrackerProcessUnderTest(["--id", "api-log"])
        let api = try Self.configured(vmm, mode: "selftest")
        let path = vmm.path("log")
        let body = "{\"log_path\": \"\(path)\", \"level\": \"Info\", \"show_level\": true, \"show_log_origin\": true}"
        #expect(try api.request("PUT", "/logger", body: body).status == 204)
        #expect(try api.request("PUT", "/logger", body: body).fault.contains("already configured"))
        #expect(try api.request("PUT", "/actions", body: #"{"action_type": "InstanceStart"}"#).status == 204)
        #expect(vmm.exitStatus(within: 60) == 0, "stderr: \(vmm.stderr)")
        let lines = ((try? String(contentsOfFile: path, encoding: .utf8)) ?? "").split(separator: "\n").map(String.init)
        #expect(!lines.isEmpty, "nothing was logged to \(path)")
        let format = #/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9} \[api-log:[^:\]]+:(INFO|WARN|ERROR):[^:\]]+:\d+\] ./#
        for line in lines { #expect(line.contains(format), "\(line)") }
        #expect(lines.contains { $0.contains("exiting") }, "the guest's end is logged: \(lines)")
    }

    @Test("--log-path and --metrics-path take FIFOs with a reader; without one the process says so and exits 153")
    func fifoDestinations() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("swiftvm-fifo-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let logFIFO = directory + "/log.fifo"
        #expect(mkfifo(logFIFO, 0o600) == 0)
        let unread = try FirecrackerProcessUnderTest(["--log-path", logFIFO])
        #expect(unread.exitStatus(within: 10) == 153)
        #expect(unread.stderr.contains("a FIFO needs a reader first"), "stderr: \(unread.stderr)")

        let reader = open(logFIFO, O_RDONLY | O_NONBLOCK)
        #expect(reader >= 0)
        defer { close(reader) }
        let vmm = try FirecrackerProcessUnderTest(["--log-path", logFIFO, "--id", "fifo-test"])
        #expect(try vmm.client().request("GET", "/").status == 200)
        var buffer = [UInt8](repeating: 0, count: 4096)
        var text = ""
        let deadline = Date().addingTimeInterval(10)
        while !text.contains("fifo-test") && Date() < deadline {
            let count = read(reader, &buffer, buffer.count)
            if count > 0 { text += String(decoding: buffer.prefix(count), as: UTF8.self) } else { usleep(10_000) }
        }
        #expect(text.contains("[fifo-test:"), "the log lines reach the FIFO: \(text)")

        let metricsFIFO = directory + "/metrics.fifo"
        #expect(mkfifo(metricsFIFO, 0o600) == 0)
        let unreadMetrics = try FirecrackerProcessUnderTest(["--metrics-path", metricsFIFO])
        #expect(unreadMetrics.exitStatus(within: 10) == 153)
        #expect(unreadMetrics.stderr.contains("a FIFO needs a reader first"), "stderr: \(unreadMetrics.stderr)")
        let metricsReader = open(metricsFIFO, O_RDONLY | O_NONBLOCK)
        #expect(metricsReader >= 0)
        defer { close(metricsReader) }
        let metered = try FirecrackerProcessUnderTest(["--metrics-path", metricsFIFO])
        #expect(try metered.client().request("PUT", "/actions", body: #"{"action_type": "FlushMetrics"}"#).status == 204)
        var metrics = ""
        let metricsDeadline = Date().addingTimeInterval(10)
        while !metrics.contains("\n") && Date() < metricsDeadline {
            let count = read(metricsReader, &buffer, buffer.count)
            if count > 0 { metrics += String(decoding: buffer.prefix(count), as: UTF8.self) } else { usleep(10_000) }
        }
        #expect(metrics.contains("\"utc_timestamp_ms\""), "a metrics line reaches the FIFO: \(metrics)")
    }

    @Test("PUT /cpu-config takes a custom CPU template: it shows in GET /vm/config and the guest boots with it")
    func cpuConfig() throws {
        let vmm = try FirecrackerProcessUnderTest()
        let api = try Self.configured(vmm, mode: "selftest")
        let template = try String(
            contentsOf: SwiftVMProcess.packageRoot.appendingPathComponent("GuestConfigs/cpu-templates/no-cx16-no-xsave.json"),
            encoding: .utf8)
        let reply = try api.request("PUT", "/cpu-config", body: template)
        #expect(reply.status == 204, "\(reply.text)")
        let config = try api.request("GET", "/vm/config").json
        #expect((config["cpu-config"] as? [String: Any])?["cpuid_modifiers"] is [Any])
        #expect(try api.request("PUT", "/actions", body: #"{"action_type": "InstanceStart"}"#).status == 204)
        #expect(vmm.exitStatus(within: 60) == 0, "stderr: \(vmm.stderr)")
        #expect(vmm.stdout.contains("RESULT"))
    }

    @Test("balloon over the API: PUT before boot, PATCH sets the target the guest inflates to, GET /balloon/statistics reports it and the guest's statistics, PATCH re-times them")
    func balloon() throws {
        let vmm = try FirecrackerProcessUnderTest()
        let api = try vmm.client()
        let boot = try api.request("PUT", "/boot-source", body: """
            {"kernel_image_path": "\(try Self.guest())", "boot_args": "console=ttyS0 reboot=k panic=1 testguest.mode=selftest \
            testguest.virtio=balloon testguest.mem_mib=128 testguest.balloon=oom,stats testguest.balloon_wait_ms=30000"}
            """)
        #expect(boot.status == 204, "\(boot.text)")
        #expect(try api.request("PUT", "/machine-config", body: #"{"vcpu_count": 1, "mem_size_mib": 128}"#).status == 204)
        #expect(try api.request("GET", "/balloon/statistics").fault.contains("PUT /balloon first"))
        let put = try api.request("PUT", "/balloon", body: #"{"amount_mib": 0, "deflate_on_oom": true, "stats_polling_interval_s": 1}"#)
        #expect(put.status == 204, "\(put.text)")
        #expect(try api.request("GET", "/balloon").json["deflate_on_oom"] as? Bool == true)
        #expect(try api.request("GET", "/balloon/statistics").fault.contains("before starting"))
        #expect(try api.request("PUT", "/actions", body: #"{"action_type": "InstanceStart"}"#).status == 204)
        #expect(try api.request("PUT", "/balloon", body: #"{"amount_mib": 1, "deflate_on_oom": true}"#).fault
            .contains("not supported after starting"))

        func printed(_ text: String) -> Bool {
            let deadline = Date().addingTimeInterval(30)
            while !vmm.stdout.contains(text) && Date() < deadline { usleep(20_000) }
            return vmm.stdout.contains(text)
        }
        try #require(printed("BALLOON READY"), "stdout: \(vmm.stdout)")
        #expect(try api.request("PATCH", "/balloon", body: #"{"amount_mib": 200}"#).fault.contains("amount_mib"))
        #expect(try api.request("PATCH", "/balloon", body: #"{"amount_mib": 16}"#).status == 204)
        try #require(printed("BALLOON INFLATED 4096"), "stdout: \(vmm.stdout)")
        #expect(try api.request("GET", "/balloon").json["amount_mib"] as? Int == 16)
        var stats: [String: Any] = [:]
        let deadline = Date().addingTimeInterval(10)
        repeat {
            stats = try api.request("GET", "/balloon/statistics").json
            if stats["actual_mib"] as? Int == 16 && stats["total_memory"] != nil { break }
            usleep(100_000)
        } while Date() < deadline
        #expect(stats["target_mib"] as? Int == 16, "\(stats)")
        #expect(stats["actual_mib"] as? Int == 16, "\(stats)")
        #expect(stats["target_pages"] as? Int == 4096)
        #expect(stats["total_memory"] as? Int ?? 0 > 0, "the guest's statistics: \(stats)")
        #expect(try api.request("PATCH", "/balloon/statistics", body: #"{"stats_polling_interval_s": 2}"#).status == 204)
        #expect(try api.request("PATCH", "/balloon/statistics", body: #"{"stats_polling_interval_s": 0}"#).fault
            .contains("stats_polling_interval_s"))
        #expect(try api.request("PATCH", "/balloon", body: #"{"amount_mib": 4}"#).status == 204)
        try #require(printed("BALLOON DEFLATED 3072"), "stdout: \(vmm.stdout)")
        #expect(vmm.exitStatus(within: 60) == 0, "stderr: \(vmm.stderr)")
        #expect(vmm.stdout.contains("PASS virtio-balloon0"), "stdout: \(vmm.stdout)")
    }

    @Test("PATCH /drives before boot changes the image; after boot a new path is refused by name, an empty update is fine")
    func patchDrive() throws {
        let vmm = try FirecrackerProcessUnderTest()
        let api = try Self.configured(vmm)
        let first = vmm.path("first.img")
        let second = vmm.path("second.img")
        _ = FileManager.default.createFile(atPath: first, contents: Data(count: 1 << 20))
        _ = FileManager.default.createFile(atPath: second, contents: Data(count: 1 << 20))
        #expect(try api.request("PATCH", "/drives/data", body: "{\"drive_id\": \"data\", \"path_on_host\": \"\(second)\"}").fault
            .contains("PUT /drives/data first"))
        #expect(try api.request("PUT", "/drives/data", body: """
            {"drive_id": "data", "path_on_host": "\(first)", "is_root_device": false, "is_read_only": true}
            """).status == 204)
        #expect(try api.request("PATCH", "/drives/data", body: "{\"drive_id\": \"data\", \"path_on_host\": \"\(second)\"}").status == 204)
        let drives = try api.request("GET", "/vm/config").json["drives"] as? [[String: Any]]
        #expect(drives?.first?["path_on_host"] as? String == second)
        #expect(try api.request("PATCH", "/network-interfaces/eth0", body: #"{"iface_id": "eth0"}"#).fault.contains("does not exist"))
        #expect(try api.request("PUT", "/actions", body: #"{"action_type": "InstanceStart"}"#).status == 204)
        #expect(try api.request("PATCH", "/drives/data", body: "{\"drive_id\": \"data\", \"path_on_host\": \"\(first)\"}").fault
            .contains("path_on_host"))
        #expect(try api.request("PATCH", "/drives/data", body: #"{"drive_id": "data"}"#).status == 204)
    }

    @Test("PUT /vsock: the socket appears at uds_path when the microVM starts, takes host connections, and is removed when the process ends")
    func vsock() throws {
        let vmm = try FirecrackerProcessUnderTest()
        let api = try Self.configured(vmm)
        let uds = vmm.path("v.sock")
        #expect(try api.request("PUT", "/vsock", body: "{\"guest_cid\": 3, \"uds_path\": \"\(uds)\"}").status == 204)
        #expect((try api.request("GET", "/vm/config").json["vsock"] as? [String: Any])?["guest_cid"] as? Int == 3)
        #expect(!FileManager.default.fileExists(atPath: uds), "nothing listens before InstanceStart")
        #expect(try api.request("PUT", "/actions", body: #"{"action_type": "InstanceStart"}"#).status == 204)
        #expect(FirecrackerProcessUnderTest.accepts(uds), "a host program can connect to \(uds)")
        kill(vmm.process.processIdentifier, SIGTERM)
        #expect(vmm.exitStatus(within: 10) == 128 + SIGTERM)
        #expect(!FileManager.default.fileExists(atPath: uds), "the socket file goes with the process")
    }

    @Test("a start that fails (a network interface whose TAP does not exist) is a 400 naming the TAP, and the VMM can be reconfigured")
    func failedStart() throws {
        let vmm = try FirecrackerProcessUnderTest()
        let api = try Self.configured(vmm, mode: "selftest")
        let net = try api.request("PUT", "/network-interfaces/eth0", body: #"{"iface_id": "eth0", "host_dev_name": "swiftvm-no-tap"}"#)
        #expect(net.status == 204, "\(net.text)")
        let start = try api.request("PUT", "/actions", body: #"{"action_type": "InstanceStart"}"#)
        #expect(start.status == 400)
        #expect(start.fault.contains("swiftvm-no-tap"), "\(start.fault)")
        #expect(try api.request("GET", "/").json["state"] as? String == "Not started")
    }
}

@Suite("Firecracker config files", .serialized, .enabled(if: SwiftVMProcess.kvmAvailable, "needs a usable /dev/kvm"))
struct ConfigFileTests {
    static func write(_ text: String, in vmm: String) throws -> String {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("swiftvm-config-\(UUID().uuidString).json").path
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    @Test("--no-api --config-file boots the test guest with a drive and an entropy device; the reset ends it with 0")
    func boots() throws {
        let guest = try APITests.guest()
        let image = try SwiftVMProcess.temporaryFile([UInt8](repeating: 0, count: 1 << 20), name: "disk")
        defer { unlink(image) }
        let path = try Self.write("""
            {
              "boot-source": {"kernel_image_path": "\(guest)", "boot_args": "console=ttyS0 reboot=k panic=1 testguest.mode=selftest"},
              "machine-config": {"vcpu_count": 2, "mem_size_mib": 128},
              "drives": [{"drive_id": "scratch", "path_on_host": "\(image)", "is_root_device": false, "is_read_only": true}],
              "entropy": {}
            }
            """, in: "")
        defer { unlink(path) }
        let vmm = try FirecrackerProcessUnderTest(["--no-api", "--config-file", path], api: false)
        #expect(vmm.exitStatus(within: 60) == 0, "stderr: \(vmm.stderr)")
        #expect(vmm.stdout.contains("RESULT"), "stdout: \(vmm.stdout)")
        #expect(vmm.stdout.contains("PASS smp"))
    }

    @Test(
        "every error class names the JSON path, and the process exits 152 (Firecracker's bad configuration)",
        arguments: [
            (#"{"boot-source": {"kernel_image_path": "/nonexistent"}}"#, "boot-source"),
            (#"{"boot-source": {"kernel_image_path": "X"}, "machine-config": {"vcpu_count": 99, "mem_size_mib": 64}}"#, "machine-config"),
            (#"{"boot-source": {"kernel_image_path": "X"}, "drives": [{"drive_id": "a", "is_root_device": "yes"}]}"#, "drives[0].is_root_device"),
            (#"{"boot-source": {"kernel_image_path": "X"}, "mystery": {}}"#, "unknown field \"mystery\""),
            (#"{"machine-config": {"vcpu_count": 1, "mem_size_mib": 64}}"#, "boot-source is required"),
            (#"{"boot-source": {"kernel_image_path": "X"},}"#, "invalid"),
            (#"{"boot-source": {"kernel_image_path": "X"}, "mmds-config": {}}"#, "MMDS"),
        ] as [(String, String)])
    func errors(text: String, expected: String) throws {
        let guest = try APITests.guest()
        let path = try Self.write(text.replacingOccurrences(of: "\"X\"", with: "\"\(guest)\""), in: "")
        defer { unlink(path) }
        let vmm = try FirecrackerProcessUnderTest(["--no-api", "--config-file", path], api: false)
        #expect(vmm.exitStatus(within: 20) == 152, "stderr: \(vmm.stderr)")
        #expect(vmm.stderr.contains(expected), "stderr: \(vmm.stderr)")
    }

    @Test("--no-api without --config-file is a usage error")
    func noAPIAlone() throws {
        let outcome = try SwiftVMProcess.run(["--no-api"])
        #expect(outcome.status != 0)
        #expect(outcome.stderr.contains("--no-api needs --config-file"))
    }
}

/// A raw Unix socket, for requests a well-behaved client would not send.
final class RawSocket {
    let fd: Int32

    init(_ path: String) throws {
        fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { bytes in
            for (index, byte) in path.utf8.prefix(bytes.count - 1).enumerated() { bytes[index] = byte }
        }
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        try #require(connected == 0, "connect: \(String(cString: strerror(errno)))")
        var timeout = timeval(tv_sec: 10, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    }

    func send(_ text: String) throws {
        let bytes = Array(text.utf8)
        let sent = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        try #require(sent == bytes.count)
    }

    func receiveStatusLine() throws -> String {
        var data: [UInt8] = []
        var byte: UInt8 = 0
        while read(fd, &byte, 1) == 1 {
            if byte == UInt8(ascii: "\n") { break }
            data.append(byte)
        }
        return String(decoding: data, as: UTF8.self)
    }

    func close() { Glibc.close(fd) }

    deinit { Glibc.close(fd) }
}
