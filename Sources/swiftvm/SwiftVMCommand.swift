import ArgumentParser
import SwiftVM
import SwiftVMMemory

@main
struct SwiftVMCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "swiftvm",
        abstract: "A minimal KVM-based microVM monitor.",
        discussion: """
            Boots an x86_64 Linux vmlinux with a serial console, an i8042 controller and \
            virtio-mmio devices. Exit statuses are listed in docs/exit-codes.md.
            """,
        version: "0.1.0",
        subcommands: [
            RunCommand.self, SelfTestCommand.self, DumpTablesCommand.self, InspectCommand.self, CheckConfigCommand.self,
            FirecrackerCommand.self, SeccompProbeCommand.self,
        ],
        // Without a subcommand swiftvm behaves as Firecracker: --api-sock, --config-file, ...
        defaultSubcommand: FirecrackerCommand.self)

    static func main() {
        BootClock.markProcessStart()
        do {
            var command = try parseAsRoot()
            // The selftest's own VMs run under the filters `swiftvm run` uses
            // (docs/security.md); its main thread goes on building VMs.
            if command is SelfTestCommand {
                do { VMConfig.defaultSeccomp = try SeccompFilters.builtIn() } catch { Log.warning("no seccomp filters: \(error)") }
            }
            try command.run()
        } catch {
            exit(withError: error)
        }
    }
}

/// Options every command that boots a guest shares.
struct LogOptions: ParsableArguments {
    @Option(help: "How much the VMM logs on standard error: error, warning, info or debug.")
    var logLevel: LogLevelArgument = .init(.info)

    func apply() { Log.level = logLevel.level }
}

struct LogLevelArgument: ExpressibleByArgument {
    let level: Log.Level

    init(_ level: Log.Level) { self.level = level }

    init?(argument: String) {
        guard let level = Log.Level.allCases.first(where: { $0.name == argument.lowercased() }) else { return nil }
        self.level = level
    }

    static var allValueStrings: [String] { Log.Level.allCases.map(\.name) }
    var defaultValueDescription: String { level.name }
}
