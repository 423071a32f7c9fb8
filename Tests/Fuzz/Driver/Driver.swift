import Foundation
import SwiftVMFuzzTargets

// Built for fuzzing (scripts/fuzz.sh: -sanitize=fuzzer, -DSWIFTVM_FUZZ),
// libFuzzer's main drives the target named by SWIFTVM_FUZZ_TARGET through
// LLVMFuzzerTestOneInput. Built normally, the program replays files:
//
//   swiftvm-fuzz --list
//   swiftvm-fuzz TARGET FILE...

#if SWIFTVM_FUZZ
nonisolated(unsafe) private var selected: FuzzTarget?

@_cdecl("LLVMFuzzerInitialize")
public func fuzzerInitialize(_ argc: UnsafeMutablePointer<Int32>?, _ argv: UnsafeMutableRawPointer?) -> Int32 {
    let name = ProcessInfo.processInfo.environment["SWIFTVM_FUZZ_TARGET"] ?? ""
    guard let target = FuzzTargets.named(name) else {
        let names = FuzzTargets.all.map(\.name).joined(separator: " ")
        FileHandle.standardError.write(Data("swiftvm-fuzz: set SWIFTVM_FUZZ_TARGET to one of: \(names)\n".utf8))
        exit(2)
    }
    selected = target
    FuzzTargets.quietLogs()
    return 0
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzerTestOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    selected?.run(UnsafeRawBufferPointer(start: data, count: size))
    return 0
}
#else
@main
struct ReplayFuzzInputs {
    static func main() {
        let arguments = Array(CommandLine.arguments.dropFirst())
        if arguments.first == "--list" || arguments.isEmpty {
            for target in FuzzTargets.all {
                print("\(target.name.padding(toLength: 16, withPad: " ", startingAt: 0)) \(target.summary)")
            }
            return
        }
        guard let target = FuzzTargets.named(arguments[0]) else {
            FileHandle.standardError.write(Data("swiftvm-fuzz: no target \(arguments[0])\n".utf8))
            exit(2)
        }
        for path in arguments.dropFirst() {
            guard let data = FileManager.default.contents(atPath: path) else {
                FileHandle.standardError.write(Data("swiftvm-fuzz: cannot read \(path)\n".utf8))
                exit(1)
            }
            data.withUnsafeBytes { target.run($0) }
            print("ok \(path)")
        }
    }
}
#endif
