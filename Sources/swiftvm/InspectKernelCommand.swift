import ArgumentParser
import SwiftVM
import SwiftVMMemory
import SwiftVMInspect

struct InspectKernelCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "kernel",
        abstract: "Say what a kernel file is and whether swiftvm can boot it.",
        discussion: """
            Identifies the file (ELF vmlinux, bzImage, arm64 Image, PE/EFI executable, compressed \
            file), prints its header fields and its "Linux version" banner, and says whether \
            swiftvm boots it on x86_64 and on aarch64 and what to pass instead. A kernel built with \
            CONFIG_IKCONFIG carries its .config; it is decompressed and checked as `swiftvm \
            check-config` would. A compressed file is looked into, at most 4 layers deep and 64 MiB \
            decompressed in all. Exits 0 when the kernel is usable on --arch (and its embedded \
            config, if any, has no errors), 65 otherwise, 66 when the file cannot be read.
            """)

    @Argument(help: "The kernel file: vmlinux, bzImage, Image, ...")
    var file: String

    @OptionGroup var path: GuestPathOptions

    func run() throws {
        // Read with pread: a large vmlinux is not read whole just to check its headers.
        let image = try openInput(file, role: "kernel", accepting: .regularFile)
        let inspection = KernelInspection.inspect(image)
        print("\(file): \(inspection.format)")
        printFacts(inspection, indent: "  ")
        printContents(of: inspection, indent: "  ")
        let asked = path.arch
        for arch in KernelArchitecture.allCases {
            if let problem = inspection.problems[arch] {
                print("\(arch.rawValue): not usable: \(problem)")
            } else {
                let flag = arch == .aarch64 ? " --arch aarch64" : ""
                print("\(arch.rawValue): usable (swiftvm run\(flag) --kernel \(file))")
            }
        }
        var usable = inspection.problems[asked] == nil
        if let text = inspection.embeddedConfig {
            print("embedded config (CONFIG_IKCONFIG): \(text.utf8.count) bytes, checked for \(path.guestPath):")
            do {
                let findings = try KernelConfigCheck.check(configText: text, path: path.guestPath)
                do { try report(findings, for: path.guestPath, source: "  embedded config") } catch { usable = false }
            } catch {
                print("  the embedded config cannot be parsed: \(error)")
                usable = false
            }
        } else if let error = inspection.embeddedConfigError {
            print("embedded config: \(error)")
        } else {
            print("embedded config: none (built without CONFIG_IKCONFIG); check the build's .config with `swiftvm check-config`")
        }
        if !usable { throw ExitCode(ExitStatus.badInput) }
    }

    /// What a compressed file holds, layer by layer (at most
    /// `KernelInspection.maxCompressionLayers` deep, so this ends).
    private func printContents(of inspection: KernelInspection, indent: String) {
        for inner in inspection.contents {
            print("\(indent)contains \(inner.format)")
            printFacts(inner, indent: indent + "  ")
            printContents(of: inner, indent: indent + "  ")
        }
    }

    private func printFacts(_ inspection: KernelInspection, indent: String) {
        let width = (inspection.facts.map(\.label.count) + [7]).max() ?? 7
        func line(_ label: String, _ value: String) {
            print(indent + label + ":" + String(repeating: " ", count: width - label.count + 1) + value)
        }
        for fact in inspection.facts { line(fact.label, fact.value) }
        line("version", inspection.version ?? "no \"Linux version\" banner found")
    }
}
