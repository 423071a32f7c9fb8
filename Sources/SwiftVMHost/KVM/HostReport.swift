import Glibc

/// What this host offers for running microVMs, as a person debugging a host wants to see it.
public struct HostReport: Sendable {
    /// KVM modules loaded (kvm_intel, kvm_amd, kvm_pvm, ...).
    public var kvmModules: [String]
    /// Whether the CPU advertises hardware virtualization (vmx or svm).
    public var hardwareVirtualization: String?
    /// `/dev/kvm`'s API version, or why it could not be opened.
    public var kvm: Result<Int32, KVMError>

    public static func probe(kvmPath: String = KVM.defaultPath) -> HostReport {
        let candidates = ["kvm_intel", "kvm_amd", "kvm_pvm", "kvm_arm"]
        let modules = candidates.filter { access("/sys/module/\($0)", F_OK) == 0 }
        var virtualization: String?
        if let cpuinfo = readSmallFile("/proc/cpuinfo"),
            let flags = cpuinfo.split(separator: "\n").first(where: { $0.hasPrefix("flags") })
        {
            let words = Set(flags.split(separator: " ").map(String.init))
            virtualization = words.contains("vmx") ? "vmx" : words.contains("svm") ? "svm" : nil
        }
        let kvm: Result<Int32, KVMError>
        do { kvm = .success(try KVM(path: kvmPath).apiVersion) } catch { kvm = .failure(error) }
        return HostReport(kvmModules: modules, hardwareVirtualization: virtualization, kvm: kvm)
    }

    /// True when guests run on hardware virtualization rather than an emulating backend.
    public var canRunUnmodifiedGuests: Bool {
        hardwareVirtualization != nil && (kvmModules.contains("kvm_intel") || kvmModules.contains("kvm_amd"))
    }

    /// True when this host's KVM runs guests by instruction emulation (kvm_pvm,
    /// or no VMX/SVM at all). Cheaper than `probe`: it opens nothing.
    public static var isEmulating: Bool {
        if access("/sys/module/kvm_pvm", F_OK) == 0 { return true }
        return access("/sys/module/kvm_intel", F_OK) != 0 && access("/sys/module/kvm_amd", F_OK) != 0
            && access("/sys/module/kvm", F_OK) == 0
    }

    public var lines: [String] {
        var lines: [String] = []
        switch kvm {
        case .success(let version): lines.append("KVM API version \(version)")
        case .failure(let error): lines.append("KVM unavailable: \(error)")
        }
        lines.append("KVM backend module: " + (kvmModules.isEmpty ? "none found" : kvmModules.joined(separator: ", ")))
        if let hardwareVirtualization {
            lines.append("hardware virtualization: yes (\(hardwareVirtualization))")
        } else {
            lines.append("hardware virtualization: no (no vmx or svm in /proc/cpuinfo)")
        }
        if kvmModules.contains("kvm_pvm") {
            lines.append("note: kvm_pvm is a paravirtual backend; unmodified guests run under instruction "
                + "emulation, slowly, and a stock Linux kernel stops in early boot (its int3 self-test); "
                + "the test kernel (scripts/build-kernel.sh --test-kernel) boots to user space here")
        }
        return lines
    }
}

/// Reads a small text file whole (procfs and sysfs files have no useful size).
func readSmallFile(_ path: String, limit: Int = 1 << 20) -> String? {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { return nil }
    defer { close(fd) }
    var data: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 65536)
    while data.count < limit {
        let count = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        if count <= 0 { break }
        data += chunk.prefix(count)
    }
    return String(decoding: data, as: UTF8.self)
}

/// The VMM process's own memory use, from /proc/self/status.
public struct ProcessMemory: Sendable {
    /// Peak resident set (VmHWM), KiB.
    public var peakResidentKiB: Int
    /// Resident anonymous memory (RssAnon), KiB: private to this VMM, guest RAM included.
    public var anonymousKiB: Int
    /// Resident file-backed memory (RssFile), KiB: code and libraries, shared between VMMs.
    public var fileKiB: Int

    public static func current() -> ProcessMemory? {
        guard let status = readSmallFile("/proc/self/status") else { return nil }
        func field(_ name: String) -> Int {
            guard let line = status.split(separator: "\n").first(where: { $0.hasPrefix(name + ":") }) else { return 0 }
            return line.split(separator: " ").compactMap { Int($0) }.first ?? 0
        }
        return ProcessMemory(peakResidentKiB: field("VmHWM"), anonymousKiB: field("RssAnon"), fileKiB: field("RssFile"))
    }
}
