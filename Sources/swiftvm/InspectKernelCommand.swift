import ArgumentParser
import SwiftVM

/// Placeholder for `swiftvm inspect kernel`; its implementation replaces this file.
struct InspectKernelCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "kernel",
        abstract: "Check a guest kernel image (not implemented yet).")

    @Argument(help: "The kernel image.")
    var file: String?

    func run() throws {
        print("swiftvm inspect kernel: not implemented yet")
        throw ExitCode(ExitStatus.internalError)
    }
}
