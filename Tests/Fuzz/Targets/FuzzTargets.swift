import SwiftVMMemory

/// The fuzz targets: one entry function per parser of untrusted input. The
/// libFuzzer driver (`swiftvm-fuzz`) and the replay test both call them
/// through ``FuzzTargets/all``. An entry takes any bytes and must neither
/// crash nor hang on them; errors thrown by the code under test are expected
/// and ignored.
public struct FuzzTarget: Sendable {
    public let name: String
    /// What the input is, for `scripts/fuzz.sh --list`.
    public let summary: String
    /// The `-max_len` the fuzzer uses for this target.
    public let maxLength: Int
    public let run: @Sendable (UnsafeRawBufferPointer) -> Void
}

public enum FuzzTargets {
    public static let all: [FuzzTarget] = [
        FuzzTarget(
            name: "split-queue", summary: "split virtqueue rings and descriptor chains in guest memory",
            maxLength: 4096, run: VirtioFuzz.splitQueue),
        FuzzTarget(
            name: "virtio-block", summary: "virtio-block requests on a queue, in-memory disk",
            maxLength: 4096, run: VirtioFuzz.block),
        FuzzTarget(
            name: "vsock", summary: "virtio-vsock tx/rx/event queues with a fake host side",
            maxLength: 4096, run: VirtioFuzz.vsock),
        FuzzTarget(
            name: "virtio-net", summary: "virtio-net header, tx frames and rx delivery",
            maxLength: 4096, run: VirtioFuzz.net),
        FuzzTarget(
            name: "kernel-loader", summary: "x86_64 ELF vmlinux and arm64 Image loading",
            maxLength: 8192, run: BootFuzz.kernelLoader),
        FuzzTarget(
            name: "kernel-inspect", summary: "kernel inspection (format, gzip layers, notes, symbols), DEFLATE, .config",
            maxLength: 16384, run: InspectFuzz.kernel),
        FuzzTarget(
            name: "ext4", summary: "ext4 image reader, init search and disk probe",
            maxLength: 65536, run: InspectFuzz.ext4),
        FuzzTarget(
            name: "cpu-template", summary: "CPU template JSON, applied to CPUID entries and MSRs",
            maxLength: 4096, run: BootFuzz.cpuTemplate),
        FuzzTarget(
            name: "api-request", summary: "Firecracker API requests (method, path, JSON body)",
            maxLength: 4096, run: APIFuzz.request),
        FuzzTarget(
            name: "config-file", summary: "Firecracker JSON config file",
            maxLength: 8192, run: APIFuzz.configFile),
    ]

    public static func named(_ name: String) -> FuzzTarget? { all.first { $0.name == name } }

    /// Only errors are logged: the devices warn about every malformed
    /// request, which is what the fuzzer sends most of the time.
    public static func quietLogs() { Log.level = .error }
}
