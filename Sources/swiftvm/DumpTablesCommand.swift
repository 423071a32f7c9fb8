import ArgumentParser
import Glibc
import SwiftVM
import SwiftVMMemory
import SwiftVMBoot
import SwiftVMHost

struct DumpTablesCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dump-tables",
        abstract: "Write the tables that describe the machine to the guest, for inspection.",
        discussion: """
            x86_64: RSDP.dat, XSDT.dat, FACP.dat, APIC.dat and DSDT.dat, exactly as `swiftvm run` \
            places them in guest memory (disassemble with `iasl -d *.dat`). aarch64: guest.dtb \
            (decompile with `dtc -I dtb -O dts guest.dtb`). Use it when a guest does not see a CPU or \
            a device: the tables show what swiftvm told it.
            """)

    enum Architecture: String, ExpressibleByArgument, CaseIterable {
        case x86_64, aarch64
    }

    enum DeviceKind: String, CaseIterable {
        case block, net, vsock, balloon, rng
    }

    @Option(help: "Number of vCPUs (1 to \(VMConfig.maxVCPUs)).")
    var vcpus: Int = 1

    @Option(help: ArgumentHelp(
        "The virtio devices, in guest order, as a comma-separated list of: \(DeviceKind.allCases.map(\.rawValue).joined(separator: ", ")).",
        valueName: "list"))
    var devices: String = ""

    @Option(help: "Guest RAM in MiB (aarch64 device tree only).")
    var memory: Int = 128

    @Option(help: "Kernel command line for /chosen (aarch64 device tree only).")
    var cmdline: String = "keep_bootcon console=ttyS0 reboot=k panic=1"

    @Option(help: "The guest architecture: x86_64 or aarch64.")
    var arch: Architecture = .x86_64

    @Option(help: "Directory to write the files into (created if missing).")
    var out: String

    func validate() throws {
        guard (1...VMConfig.maxVCPUs).contains(vcpus) else {
            throw ValidationError("--vcpus must be between 1 and \(VMConfig.maxVCPUs); got \(vcpus)")
        }
        _ = try deviceKinds()
    }

    private func deviceKinds() throws -> [DeviceKind] {
        let names = devices.split(separator: ",").map { String($0.filter { $0 != " " }) }.filter { !$0.isEmpty }
        guard names.count <= VMConfig.maxVirtioDevices else {
            throw ValidationError("at most \(VMConfig.maxVirtioDevices) virtio devices fit; got \(names.count)")
        }
        return try names.map { name in
            guard let kind = DeviceKind(rawValue: name.lowercased()) else {
                throw ValidationError("--devices: \"\(name)\" is not one of \(DeviceKind.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            return kind
        }
    }

    func run() throws {
        let count = try deviceKinds().count
        var files: [(name: String, bytes: [UInt8])]
        switch arch {
        case .x86_64:
            let windows = (0..<count).map(VMConfig.virtioWindow)
            do { files = try ACPITables(vcpuCount: vcpus, virtioDevices: windows).files } catch {
                Log.error(error.description)
                throw ExitCode(ExitStatus.usage)
            }
        case .aarch64:
            let machine = Arm64MachineDescription(
                memorySize: UInt64(memory) << 20, vcpuCount: vcpus, bootargs: cmdline,
                virtioDevices: (0..<count).map { Arm64Layout.virtio($0) })
            do { files = [("guest.dtb", try machine.deviceTree())] } catch {
                Log.error(error.description)
                throw ExitCode(ExitStatus.usage)
            }
        }
        if mkdir(out, 0o755) != 0 && errno != EEXIST {
            Log.error("cannot create \(out): \(String(cString: strerror(errno)))")
            throw ExitCode(ExitStatus.missingInput)
        }
        for file in files {
            let path = out + "/" + file.name
            // O_NONBLOCK: a FIFO left at the path must not hold the command
            // until something reads it; only a regular file is written.
            let output: FileDescriptor
            do { output = try FileDescriptor.open(path, flags: O_WRONLY | O_CREAT | O_TRUNC | O_NONBLOCK) } catch {
                let reason = error.errno == ENXIO ? "it is \(FileType.describe(S_IFIFO)), not a file" : String(cString: strerror(error.errno))
                Log.error("cannot write \(path): \(reason); remove it or choose another --out")
                throw ExitCode(ExitStatus.missingInput)
            }
            var info = stat()
            guard fstat(output.rawValue, &info) == 0, info.st_mode & S_IFMT == S_IFREG else {
                Log.error("cannot write \(path): it is \(FileType.describe(info.st_mode & S_IFMT)), not a file; remove it or choose another --out")
                throw ExitCode(ExitStatus.missingInput)
            }
            var failure: SystemError?
            file.bytes.withUnsafeBytes { bytes in
                do throws(SystemError) { try output.writeAll(bytes) } catch { failure = error }
            }
            if let failure {
                Log.error("cannot write \(path): \(String(cString: strerror(failure.errno)))")
                throw ExitCode(ExitStatus.hostResource)
            }
            print("\(path) (\(file.bytes.count) bytes)")
        }
    }
}
