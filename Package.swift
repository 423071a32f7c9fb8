// swift-tools-version: 6.0
import PackageDescription

// Modules, lowest first; each imports only modules listed before it.
//   CSwiftVM        C shim over the Linux UAPI headers (ioctl numbers, wrappers)
//   SwiftVMMemory   guest memory and addresses, image byte sources, the log
//   SwiftVMBoot     pure boot builders: kernel loaders, zero page, page tables, GDT,
//                   MP table, ACPI, device tree, CPUID and CPU templates
//   SwiftVMInspect  image inspection for pre-flight and diagnosis: ext4 reader and init
//                   search, kernel inspection and symbols, DEFLATE, kernel config checks
//   SwiftVMDevices  buses and emulated devices; they see guest memory, never KVM
//   SwiftVMHost     syscalls, file descriptors, eventfd/epoll, threads; /dev/kvm, VM, vCPU
//   SwiftVM         the VMM: assembles a machine, runs vCPUs and the event loop (the library)
//   SwiftVMAPI      Firecracker's process interface: HTTP API (SwiftNIO), config file, logs, metrics
//   swiftvm         the command-line front end
//   (Tests/Fuzz)    fuzz targets for the parsers of untrusted input, their libFuzzer driver and replay test
let package = Package(
    name: "swiftvm",
    products: [
        .library(name: "SwiftVM", targets: ["SwiftVM"]),
        .executable(name: "swiftvm", targets: ["swiftvm"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-atomics", from: "1.2.0"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.80.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.6.0"),
    ],
    targets: [
        .target(
            name: "CSwiftVM", cSettings: [.define("_GNU_SOURCE")],
            linkerSettings: [.linkedLibrary("uring"), .linkedLibrary("seccomp")]),
        .target(name: "SwiftVMMemory"),
        .target(name: "SwiftVMBoot", dependencies: ["SwiftVMMemory"]),
        .target(name: "SwiftVMInspect", dependencies: ["SwiftVMMemory", "SwiftVMBoot"]),
        .target(
            name: "SwiftVMDevices",
            dependencies: ["SwiftVMMemory", "SwiftVMBoot", .product(name: "Atomics", package: "swift-atomics")]),
        .target(name: "SwiftVMHost", dependencies: ["CSwiftVM", "SwiftVMMemory", "SwiftVMBoot"]),
        .target(
            name: "SwiftVM",
            dependencies: ["SwiftVMMemory", "SwiftVMBoot", "SwiftVMInspect", "SwiftVMDevices", "SwiftVMHost"]),
        // Firecracker's process interface: the HTTP API, the config file, logs and metrics.
        .target(
            name: "SwiftVMAPI",
            dependencies: [
                "SwiftVM", "SwiftVMMemory", "SwiftVMHost",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ]),
        .executableTarget(
            name: "swiftvm",
            dependencies: [
                "SwiftVM", "SwiftVMAPI", "SwiftVMMemory", "SwiftVMBoot", "SwiftVMInspect", "SwiftVMHost",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        // A program that embeds the library, built and run by the test suite (docs/library.md).
        .executableTarget(name: "swiftvm-embedding-example", dependencies: ["SwiftVM"], path: "Tests/EmbeddingExample"),
        .target(name: "SwiftVMTestSupport", dependencies: ["SwiftVMMemory", "SwiftVMBoot"], path: "Tests/SwiftVMTestSupport"),
        // Fuzzing (docs/fuzzing.md): one entry per parser of untrusted input, the libFuzzer driver
        // (scripts/fuzz.sh builds it sanitized in .build-fuzz), and the replay of the committed inputs.
        .target(
            name: "SwiftVMFuzzTargets",
            dependencies: ["SwiftVM", "SwiftVMAPI", "SwiftVMMemory", "SwiftVMBoot", "SwiftVMInspect", "SwiftVMDevices"],
            path: "Tests/Fuzz/Targets",
            swiftSettings: [.define("SWIFTVM_TESTABLE_API", .when(configuration: .debug))]),
        .executableTarget(name: "swiftvm-fuzz", dependencies: ["SwiftVMFuzzTargets"], path: "Tests/Fuzz/Driver"),
        .testTarget(name: "SwiftVMFuzzTests", dependencies: ["SwiftVMFuzzTargets"], path: "Tests/Fuzz/Replay"),
        .testTarget(name: "SwiftVMBootTests", dependencies: ["SwiftVMMemory", "SwiftVMBoot", "SwiftVMTestSupport"]),
        .testTarget(name: "SwiftVMInspectTests", dependencies: ["SwiftVMMemory", "SwiftVMBoot", "SwiftVMInspect", "SwiftVMTestSupport"]),
        .testTarget(
            name: "SwiftVMDevicesTests",
            dependencies: ["SwiftVMMemory", "SwiftVMDevices", .product(name: "Atomics", package: "swift-atomics")]),
        .testTarget(
            name: "SwiftVMTests",
            dependencies: ["SwiftVM", "SwiftVMAPI", "SwiftVMMemory", "SwiftVMBoot", "SwiftVMInspect", "SwiftVMDevices", "SwiftVMHost"],
            exclude: ["Support/net-helper.py"]),
    ]
)
