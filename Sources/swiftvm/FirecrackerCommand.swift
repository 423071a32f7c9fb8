import ArgumentParser
import Glibc
import SwiftVMAPI

/// `swiftvm` without a subcommand: Firecracker's process interface, so tools
/// written for Firecracker drive swiftvm unchanged (docs/api.md).
struct FirecrackerCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "firecracker",
        abstract: "Run one microVM as Firecracker does: configured through an API socket or a config file.",
        discussion: """
            This is what `swiftvm` does without a subcommand. The flags are Firecracker's: the API \
            listens on --api-sock (default /run/firecracker.socket); --config-file boots a \
            Firecracker JSON config, with the API still listening unless --no-api. The process \
            ends when the guest reboots or powers off (status 0). See docs/api.md.
            """,
        shouldDisplay: false)

    @Option(name: .customLong("api-sock"), help: "The Unix socket the HTTP API listens on.")
    var apiSock: String = "/run/firecracker.socket"

    @Option(help: "The microVM's id, shown in logs and GET /.")
    var id: String = "anonymous-instance"

    @Option(name: .customLong("config-file"), help: "A Firecracker JSON config file to boot from.")
    var configFile: String?

    @Flag(name: .customLong("no-api"), help: "Serve no API (needs --config-file).")
    var noAPI = false

    @Flag(name: .customLong("boot-timer"), help: "Log the time until the guest writes the boot-timer byte.")
    var bootTimer = false

    @Option(name: .customLong("log-path"), help: "A file or FIFO for the log (default: standard error).")
    var logPath: String?

    @Option(help: "Log level: Error, Warning, Info, Debug, Trace or Off.")
    var level: String?

    @Flag(name: .customLong("show-level"), help: "Show each log line's level.")
    var showLevel = false

    @Flag(name: .customLong("show-log-origin"), help: "Show each log line's source file and line.")
    var showLogOrigin = false

    @Option(help: "Only log lines from this module.")
    var module: String?

    @Option(name: .customLong("metrics-path"), help: "A file or FIFO for metrics (one JSON object per flush).")
    var metricsPath: String?

    @Option(name: .customLong("http-api-max-payload-size"), help: "The largest request body the API accepts, in bytes.")
    var httpAPIMaxPayloadSize: Int = 51200

    @Flag(name: .customLong("no-seccomp"), help: "Run without seccomp filters (docs/security.md).")
    var noSeccomp = false

    @Option(name: .customLong("seccomp-filter"), help: ArgumentHelp(
        "A seccomp filter file replacing the built-in allow-lists: swiftvm's JSON format, not Firecracker's BPF (docs/security.md).",
        valueName: "file"))
    var seccompFilter: String?

    // Passed by Firecracker's jailer; accepted and not needed.
    @Option(name: .customLong("start-time-us"), help: .hidden) var startTimeUs: UInt64?
    @Option(name: .customLong("start-time-cpu-us"), help: .hidden) var startTimeCPUUs: UInt64?
    @Option(name: .customLong("parent-cpu-time-us"), help: .hidden) var parentCPUTimeUs: UInt64?

    func validate() throws {
        if noAPI && configFile == nil {
            throw ValidationError("--no-api needs --config-file: without the API, the config file is the only way to configure the microVM")
        }
        guard httpAPIMaxPayloadSize > 0 else { throw ValidationError("--http-api-max-payload-size must be positive") }
        if noSeccomp && seccompFilter != nil {
            throw ValidationError("--no-seccomp and --seccomp-filter contradict each other; give one")
        }
    }

    func run() throws {
        var options = FirecrackerProcess.Options()
        options.apiSocket = noAPI ? nil : apiSock
        options.instanceID = id
        options.configFile = configFile
        options.bootTimer = bootTimer
        options.logPath = logPath
        options.level = level
        options.showLevel = showLevel
        options.showLogOrigin = showLogOrigin
        options.module = module
        options.metricsPath = metricsPath
        options.maxPayload = httpAPIMaxPayloadSize
        options.noSeccomp = noSeccomp
        options.seccompFilter = seccompFilter
        let status = FirecrackerProcess.run(options)
        throw ExitCode(status)
    }
}
