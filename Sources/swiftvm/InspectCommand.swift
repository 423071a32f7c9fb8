import ArgumentParser

/// `swiftvm inspect`: read-only checks of the files a guest boots from.
struct InspectCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "inspect",
        abstract: "Check a root file system or kernel image before booting it.",
        // `kernel` lives in InspectKernelCommand.swift, maintained separately from `rootfs`.
        subcommands: [InspectRootfsCommand.self, InspectKernelCommand.self])
}
