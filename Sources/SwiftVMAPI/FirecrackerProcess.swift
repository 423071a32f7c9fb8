import Glibc
import Logging
import Synchronization
import SwiftVM
import SwiftVMHost
import SwiftVMMemory

/// swiftvm run as Firecracker runs: an API socket and/or a config file, one
/// microVM, the process ending when the guest does. The CLI's default
/// command fills `Options` from Firecracker's flags and calls `run`.
public enum FirecrackerProcess {
    public struct Options: Sendable {
        public var apiSocket: String? = "/run/firecracker.socket"
        public var instanceID = "anonymous-instance"
        public var configFile: String?
        public var bootTimer = false
        public var logPath: String?
        public var level: String?
        public var showLevel = false
        public var showLogOrigin = false
        public var module: String?
        public var metricsPath: String?
        public var maxPayload = 51200
        /// Firecracker's `--no-seccomp`: no seccomp filters (docs/security.md).
        public var noSeccomp = false
        /// Firecracker's `--seccomp-filter`: a filter file (swiftvm's JSON
        /// format) instead of the built-in lists.
        public var seccompFilter: String?

        public init() {}
    }

    /// Firecracker's exit statuses where they mean the same thing.
    public enum ExitCode {
        public static let ok: Int32 = 0
        public static let genericError: Int32 = 1
        public static let badConfiguration: Int32 = 152
        public static let argumentParsing: Int32 = 153
        /// A thread made a system call its seccomp filter does not allow (the
        /// SIGSYS handler exits with it; docs/security.md).
        public static let badSyscall: Int32 = SeccompFilters.violationStatus
    }

    /// Runs until the guest stops (or a termination signal); returns the
    /// process's exit status.
    public static func run(_ options: Options) -> Int32 {
        signal(SIGPIPE, SIG_IGN)
        let output = FirecrackerLogOutput(instanceID: options.instanceID)
        LoggingSystem.bootstrap { _ in FirecrackerLogHandler(output: output) }
        let logger = Logger(label: "swiftvm")
        // The VMM's own messages go through the same logger.
        Log.setHandler { level, text in
            switch level {
            case .error: logger.error("\(text)")
            case .warning: logger.warning("\(text)")
            case .info: logger.info("\(text)")
            case .debug: logger.debug("\(text)")
            }
        }
        var loggerConfig = LoggerConfig(
            logPath: options.logPath, level: options.level, showLevel: options.showLevel,
            showLogOrigin: options.showLogOrigin, module: options.module)
        if loggerConfig.logPath == nil && loggerConfig.level == nil { loggerConfig.level = "Info" }
        if let problem = output.configure(loggerConfig) {
            Log.setHandler(nil)
            Log.error(problem)
            return ExitCode.argumentParsing
        }
        logger.info("Running swiftvm (Firecracker API \(FirecrackerController.version))")
        if let note = SeccompFilterFile.rootNote { logger.info("\(note)") }

        // Seccomp (docs/security.md): the VMs the API or the config file
        // builds load their threads' filters; the vCPU kick's handler is set
        // now, so that the API thread need not change signal handlers.
        let seccomp: SeccompFilters?
        do { seccomp = try SeccompFilterFile.filters(disabled: options.noSeccomp, file: options.seccompFilter) } catch {
            logger.error("\(error.message)")
            return ExitCode.argumentParsing
        }
        if let seccomp {
            VMConfig.defaultSeccomp = seccomp
            Signals.installVCPUKickHandler()
        }

        // Termination signals: before the VM runs they end the process; after,
        // they stop the VM and the process ends with its exit reason.
        let signals: FileDescriptor
        let started: EventFD
        do {
            signals = try Signals.signalDescriptor(for: Signals.termination + [Signals.stateReport])
            started = try EventFD()
        } catch {
            logger.error("cannot set up signal handling: \(error)")
            return ExitCode.genericError
        }
        let startedVM = Mutex<MicroVM?>(nil)
        let metrics = FirecrackerMetrics(instanceID: options.instanceID)
        let controller = FirecrackerController(
            instanceID: options.instanceID, metrics: metrics,
            configureLogger: { output.configure($0) },
            onStart: { vm in
                startedVM.withLock { $0 = vm }
                started.signal()
            },
            bootTimer: options.bootTimer)
        if let path = options.metricsPath, let problem = metrics.configure(path: path) {
            logger.error("\(problem)")
            return ExitCode.argumentParsing
        }

        var server: APIServer?
        if let path = options.apiSocket {
            do { server = try APIServer(path: path, controller: controller, maxPayload: options.maxPayload) } catch {
                logger.error("\(error.message)")
                return ExitCode.genericError
            }
        }
        defer { server?.close() }
        if let server, let seccomp {
            do { try server.installSeccomp(seccomp) } catch {
                logger.error("\(error)")
                return ExitCode.genericError
            }
        }

        if let path = options.configFile {
            let bytes: [UInt8]
            do { bytes = try FileImage(path: path, role: "config file").readAll(limit: 1 << 20) } catch {
                logger.error("\(error.message)")
                return ExitCode.badConfiguration
            }
            do { try FirecrackerConfigFile.apply(bytes, source: path, to: controller) } catch {
                logger.error("\(error.description)")
                return ExitCode.badConfiguration
            }
            let reply = controller.handle(method: "PUT", path: "/actions", body: Array(#"{"action_type":"InstanceStart"}"#.utf8))
            if reply.status >= 300 {
                logger.error("\(reply.faultMessage ?? "InstanceStart failed")")
                return ExitCode.badConfiguration
            }
        }

        // Wait for the VM to start, or for a signal.
        while startedVM.withLock({ $0 }) == nil {
            var fds = [pollfd(fd: signals.rawValue, events: Int16(POLLIN), revents: 0),
                       pollfd(fd: started.rawValue, events: Int16(POLLIN), revents: 0)]
            guard poll(&fds, 2, -1) >= 0 || errno == EINTR else { break }
            if fds[0].revents != 0, let number = Signals.readSignal(from: signals), number != Signals.stateReport {
                logger.info("stopped by signal \(number) before the microVM started")
                return 128 + number
            }
        }
        guard let vm = startedVM.withLock({ $0 }) else { return ExitCode.genericError }
        do {
            try vm.events.subscribe(signals.rawValue) { _ in
                while let number = Signals.readSignal(from: signals) {
                    if number == Signals.stateReport {
                        logger.info("vCPU registers (SIGUSR1):\n\(vm.vcpuReport())")
                    } else {
                        vm.stop(because: .signal(number))
                    }
                }
            }
        } catch {
            logger.error("\(error.message)")
        }
        if metrics.isConfigured {
            vm.events.addTimer(afterMilliseconds: 60_000, periodMilliseconds: 60_000) { metrics.flush(vm: vm) }
        }
        // Last: the VM's threads and the API's have loaded theirs.
        do { try seccomp?.install(.main) } catch { vm.stop(because: .vmmError("\(error)")) }
        let reason = vm.wait()
        if metrics.isConfigured { metrics.flush(vm: vm) }
        if reason.isClean {
            logger.info("\(reason.description); exiting")
            return ExitCode.ok
        }
        logger.error("\(reason.description)")
        return reason.exitCode
    }
}
