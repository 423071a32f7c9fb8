import Glibc
import SwiftVMHost
import SwiftVMDevices

/// One microVM: KVM objects, guest RAM, devices and vCPUs, assembled from a
/// `VMConfig` and run until the guest stops.
///
/// ```swift
/// let vm = try MicroVM(config: VMConfig(kernelPath: "vmlinux"))
/// let reason = vm.run()
/// ```
public final class MicroVM: Sendable {
    public let config: VMConfig
    let machine: Machine

    /// Builds the machine: checks the inputs, opens KVM, maps RAM, loads the
    /// kernel, writes the boot structures and creates devices and vCPUs.
    /// Nothing of the guest runs yet.
    public init(config: VMConfig) throws(VMMError) {
        self.config = config
        machine = try Machine.build(config)
    }

    /// Runs the guest on one thread per vCPU until it resets, powers off,
    /// crashes, or the VMM is stopped; then tears everything down and returns why.
    public func run() -> VMExitReason {
        machine.run(config: config)
    }

    /// After `run()`: what the console showed that explains a failed boot (a
    /// kernel panic, no init, no root file system, or no output at all), with
    /// the likely cause and fix; nil when there is nothing to explain.
    public var bootDiagnosis: String? {
        let threshold = Double(config.consoleSilenceWarningSeconds ?? Int.max)
        let silentLongEnough = machine.runSeconds >= threshold
        return machine.devices.console?.summary(
            commandLine: config.guestCommandLine, silentLongEnough: silentLongEnough,
            emulatingHost: silentLongEnough && HostReport.isEmulating)
    }

    /// After `run()`: true when the guest wrote nothing at all on its console.
    public var machineWasSilent: Bool { (machine.devices.console?.bytesSeen ?? 0) == 0 }

    /// Stops a running VM from another thread; `run()` then returns `.stopped(reason)`.
    public func stop(reason: String) {
        machine.latch.finish(.stopped(reason))
    }
}
