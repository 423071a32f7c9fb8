import Glibc
import SwiftVM
import SwiftVMHost

/// The self-test's two runs of Firecracker's process interface: the test
/// guest booted by another `swiftvm` process, once configured through its
/// API socket and once from a config file, as Firecracker's clients do it.
public enum FirecrackerSelfTest {
    /// The machine both runs boot: two vCPUs, a read-write drive, entropy.
    static let scenario = SelfTest.Scenario(
        name: "Firecracker", vcpus: 2, memoryMiB: 256, mode: "selftest", expectedExit: .reset,
        drives: [SelfTest.TestDrive(kind: .rw)])

    /// Runs both; `executable` is the swiftvm binary.
    public static func run(_ test: SelfTest, executable: String) -> [SelfTest.Check] {
        let seconds = Int(test.timeoutSeconds)
        return test.runExternally(scenario, name: "Firecracker API socket") { run in
            viaAPI(run, guest: test.guestPath, executable: executable, seconds: seconds)
        } + test.runExternally(scenario, name: "Firecracker config file") { run in
            viaConfigFile(run, guest: test.guestPath, executable: executable, seconds: seconds)
        }
    }

    /// The configuration as Firecracker's config file, and as API bodies.
    static func sections(_ run: SelfTest.ExternalRun, guest: String) -> [(path: String, body: String)] {
        var sections = [
            ("/boot-source", #"{"kernel_image_path": \#(quoted(guest)), "boot_args": \#(quoted(run.commandLine))}"#),
            ("/machine-config", #"{"vcpu_count": \#(run.scenario.vcpus), "mem_size_mib": \#(run.scenario.memoryMiB)}"#),
            ("/entropy", "{}"),
            ("/serial", #"{"serial_out_path": \#(quoted(run.consolePath))}"#),
        ]
        for drive in run.drives {
            sections.append(("/drives/\(drive.id)", """
                {"drive_id": \(quoted(drive.id)), "path_on_host": \(quoted(drive.path)), \
                "is_root_device": \(drive.isRootDevice), "is_read_only": \(drive.readOnly)}
                """))
        }
        return sections
    }

    static func viaAPI(_ run: SelfTest.ExternalRun, guest: String, executable: String, seconds: Int) -> SelfTest.ExternalOutcome {
        let socket = run.directory + "/api.sock"
        let child: ChildProcess
        do {
            child = try ChildProcess.spawn(
                executable, ["--api-sock", socket, "--id", "selftest", "--level", "Warning"],
                stdout: run.directory + "/stdout", stderr: run.directory + "/stderr")
        } catch {
            return .failed("cannot start \(executable): \(error)")
        }
        func fail(_ message: String) -> SelfTest.ExternalOutcome {
            child.kill(SIGKILL)
            _ = child.wait(milliseconds: 5000)
            return .failed(message + stderrTail(run))
        }
        // The socket appears once the process listens.
        var waited = 0
        while access(socket, F_OK) != 0 {
            if let status = child.wait(milliseconds: 0) { return .failed("the process exited with \(status) before listening" + stderrTail(run)) }
            guard waited < 10_000 else { return fail("no API socket after 10 s") }
            usleep(10_000)
            waited += 10
        }
        do {
            let client = try APIClient(socketPath: socket)
            defer { client.close() }
            for (path, body) in sections(run, guest: guest) {
                let reply = try client.request("PUT", path, body: body)
                guard reply.status == 204 else { return fail("PUT \(path) answered \(reply.status): \(reply.text)") }
            }
            let start = try client.request("PUT", "/actions", body: #"{"action_type": "InstanceStart"}"#)
            guard start.status == 204 else { return fail("InstanceStart answered \(start.status): \(start.text)") }
        } catch {
            return fail("API: \(error)")
        }
        guard let status = child.wait(milliseconds: seconds * 1000) else { return fail("no result within \(seconds) s") }
        return .exited(status)
    }

    static func viaConfigFile(_ run: SelfTest.ExternalRun, guest: String, executable: String, seconds: Int) -> SelfTest.ExternalOutcome {
        var config: [String] = []
        var drives: [String] = []
        for (path, body) in sections(run, guest: guest) {
            if path.hasPrefix("/drives/") {
                drives.append(body)
            } else if path == "/serial" {
                continue  // not a config-file section: the console goes to standard output
            } else {
                config.append("\(quoted(String(path.dropFirst()))): \(body)")
            }
        }
        config.append("\"drives\": [\(drives.joined(separator: ", "))]")
        let path = run.directory + "/config.json"
        let text = Array(("{\n  " + config.joined(separator: ",\n  ") + "\n}\n").utf8)
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard fd >= 0 else { return .failed("cannot write \(path): \(String(cString: strerror(errno)))") }
        let written = text.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        close(fd)
        guard written == text.count else { return .failed("cannot write \(path)") }
        let child: ChildProcess
        do {
            child = try ChildProcess.spawn(
                executable, ["--no-api", "--config-file", path, "--id", "selftest", "--level", "Warning"],
                stdout: run.consolePath, stderr: run.directory + "/stderr")
        } catch {
            return .failed("cannot start \(executable): \(error)")
        }
        guard let status = child.wait(milliseconds: seconds * 1000) else {
            child.kill(SIGKILL)
            _ = child.wait(milliseconds: 5000)
            return .failed("no result within \(seconds) s" + stderrTail(run))
        }
        return status == 0 ? .exited(0) : .failed("the process exited with status \(status)" + stderrTail(run))
    }

    /// A JSON string literal.
    static func quoted(_ text: String) -> String {
        JSONOutput.string(text)
    }

    private static func stderrTail(_ run: SelfTest.ExternalRun) -> String {
        guard let image = try? FileImage(path: run.directory + "/stderr", role: "captured error output"),
            let bytes = try? image.readAll(limit: 1 << 20)
        else { return "" }
        let lines = String(decoding: bytes, as: UTF8.self).split(separator: "\n").suffix(3)
        return lines.isEmpty ? "" : "; its log: " + lines.joined(separator: " | ")
    }
}
