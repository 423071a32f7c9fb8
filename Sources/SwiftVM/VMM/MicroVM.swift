import Glibc
import SwiftVMHost
import SwiftVMDevices

/// One microVM: KVM objects, guest RAM, devices and vCPUs, assembled from a
/// `VMConfig`, with a lifecycle a program drives from any thread.
///
/// ```swift
/// let vm = try MicroVM(config: VMConfig(kernelPath: "vmlinux"))
/// try vm.start()          // returns at once; the guest runs on threads of its own
/// try vm.pause()          // every vCPU out of the guest and held
/// vm.resume()
/// vm.stop("done")         // from any thread
/// let reason = vm.wait()  // blocks until the guest stopped, then tears down
/// ```
///
/// The library leaves the process alone: it installs one signal handler, for
/// the signal that kicks vCPUs out of the guest (SIGRTMIN; choose another with
/// `MicroVM.useVCPUKickSignal` before the first VM starts), and blocks SIGPIPE
/// only on its own threads. Termination signals, SIGPIPE's disposition and
/// the terminal stay the program's. Several VMs run in one process
/// independently.
public final class MicroVM: Sendable {
    public let config: VMConfig
    let machine: Machine

    /// Where a VM is in its life.
    public enum State: Sendable, Equatable {
        case created, running, paused, stopped
    }

    /// Builds the machine: checks the inputs, opens KVM, maps RAM, loads the
    /// kernel, writes the boot structures and creates devices and vCPUs.
    /// Nothing of the guest runs yet.
    public init(config: VMConfig) throws(VMMError) {
        var config = config
        if let path = config.cpuTemplatePath {
            do { config.cpuTemplate = try CPUTemplateFile.load(path: path) } catch {
                let kind: VMMError.Kind =
                    error.exitCode == ExitStatus.missingInput ? .missingFile(path: path) : .badCPUTemplate(path: path)
                throw VMMError(kind, error.description)
            }
        } else if let json = config.cpuTemplateJSON {
            do { config.cpuTemplate = try CPUTemplateFile.parse(json, source: "cpu-config") } catch {
                throw VMMError(.badCPUTemplate(path: "cpu-config"), error.description)
            }
        }
        self.config = config
        machine = try Machine.build(config)
    }

    /// Chooses the signal that kicks vCPU threads out of the guest (default
    /// SIGRTMIN). Takes effect only before the first VM of the process starts.
    public static func useVCPUKickSignal(_ signal: Int32) {
        Signals.useVCPUKick(signal)
    }

    /// Starts the guest on one thread per vCPU, and the device event loop on
    /// another, and returns. A VM starts once.
    public func start() throws(VMMError) {
        try machine.start()
    }

    /// Blocks until the guest resets, powers off, crashes, or is stopped;
    /// then tears the VM down and returns why it stopped. Later calls return
    /// the same reason at once.
    @discardableResult
    public func wait() -> VMExitReason {
        machine.wait()
    }

    /// Starts the guest and waits for it: `start()` then `wait()`.
    public func run() -> VMExitReason {
        do { try start() } catch { return .vmmError(error.message) }
        return wait()
    }

    /// Stops the VM from any thread; `wait()` then returns `.stopped(reason)`.
    /// The first reason to stop a VM wins.
    public func stop(_ reason: String) {
        machine.latch.finish(.stopped(reason))
    }

    /// Stops the VM with a given exit reason (a front end reports the signal
    /// that stopped it as `.signal(number)`).
    public func stop(because reason: VMExitReason) {
        machine.latch.finish(reason)
    }

    /// Takes every vCPU out of the guest and holds it; devices and their back
    /// ends keep running. Returns once all vCPUs are held.
    public func pause() throws(VMMError) {
        try machine.pause()
    }

    /// Lets a paused VM run again.
    public func resume() {
        machine.resume()
    }

    /// Presses Ctrl-Alt-Del on the guest's keyboard (Firecracker's
    /// SendCtrlAltDel): a guest with i8042 and AT keyboard drivers reboots or
    /// tells its init, which shuts down. Throws when the VM is not running or
    /// the guest has not enabled its keyboard (no driver to receive it).
    public func sendCtrlAltDel() throws(VMMError) {
        guard state == .running || state == .paused else {
            throw VMMError(.usage, "the VM is not running, so it cannot receive Ctrl-Alt-Del")
        }
        guard machine.devices.i8042?.pressCtrlAltDel() == true else {
            throw VMMError(.usage, "the guest has not enabled its keyboard (no i8042 and AT keyboard driver, "
                + "CONFIG_SERIO_I8042 and CONFIG_KEYBOARD_ATKBD), so Ctrl-Alt-Del cannot reach it")
        }
    }

    public var state: State {
        if machine.latch.isSet { return .stopped }
        guard machine.isRunning else { return .created }
        return machine.isPaused ? .paused : .running
    }

    /// The VM's event loop: a program (or a device back end) subscribes file
    /// descriptors and timers to it while the VM runs.
    public var events: EventLoop { machine.events }

    /// Every vCPU's registers, the kernel symbol at RIP and the instruction
    /// there, as text; vCPUs are stopped for a moment to read them.
    public func vcpuReport() -> String {
        machine.vcpuReport()
    }

    /// After `wait()`: what the console showed that explains a failed boot (a
    /// kernel panic, no init, no root file system, or no output at all), with
    /// the likely cause and fix; nil when there is nothing to explain.
    public var bootDiagnosis: String? {
        let threshold = Double(config.consoleSilenceWarningSeconds ?? Int.max)
        let silentLongEnough = machine.runSeconds >= threshold
        return machine.devices.console?.summary(
            commandLine: config.guestCommandLine, silentLongEnough: silentLongEnough,
            emulatingHost: silentLongEnough && HostReport.isEmulating)
    }

    /// After `wait()`: true when the guest wrote nothing at all on its console.
    public var machineWasSilent: Bool { (machine.devices.console?.bytesSeen ?? 0) == 0 }

    /// Bytes of guest console output dropped because the destination did not
    /// keep up.
    public var droppedConsoleBytes: Int { machine.devices.consoleOutput?.droppedBytes ?? 0 }
}
