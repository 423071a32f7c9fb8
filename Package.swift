// swift-tools-version: 6.0
import PackageDescription

// Layers, lowest first; each target imports only targets listed before it.
//   CSwiftVM        C shim over the Linux UAPI headers (ioctl numbers, wrappers)
//   SwiftVMGuest    guest memory and the pure builders (loaders, zero page, tables, CPUID)
//   SwiftVMHost     syscalls, file descriptors, eventfd/epoll, threads; /dev/kvm, VM, vCPU
//   SwiftVMDevices  buses and emulated devices; they see guest memory, never KVM
//   SwiftVM         the VMM: assembles a machine, runs vCPUs and the event loop
//   swiftvm         the command-line front end
let package = Package(
    name: "swiftvm",
    products: [
        .library(name: "SwiftVM", targets: ["SwiftVM"]),
        .executable(name: "swiftvm", targets: ["swiftvm"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
    ],
    targets: [
        .target(name: "CSwiftVM", cSettings: [.define("_GNU_SOURCE")], linkerSettings: [.linkedLibrary("uring")]),
        .target(name: "SwiftVMGuest"),
        .target(name: "SwiftVMHost", dependencies: ["CSwiftVM", "SwiftVMGuest"]),
        .target(name: "SwiftVMDevices", dependencies: ["SwiftVMGuest"]),
        .target(name: "SwiftVM", dependencies: ["SwiftVMHost", "SwiftVMGuest", "SwiftVMDevices"]),
        .executableTarget(
            name: "swiftvm",
            dependencies: ["SwiftVM", .product(name: "ArgumentParser", package: "swift-argument-parser")]
        ),
        .testTarget(name: "SwiftVMGuestTests", dependencies: ["SwiftVMGuest"]),
        .testTarget(name: "SwiftVMDevicesTests", dependencies: ["SwiftVMDevices"]),
        .testTarget(name: "SwiftVMTests", dependencies: ["SwiftVM"]),
    ]
)
