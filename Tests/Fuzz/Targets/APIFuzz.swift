import SwiftVM

#if SWIFTVM_TESTABLE_API
@testable import SwiftVMAPI
#endif

/// Firecracker API targets. The controller and the config file reader are
/// internal to SwiftVMAPI, so these need it built with testability (every
/// debug build, and the fuzzing build); elsewhere they only parse the JSON.
///
/// Requests with effects outside the process are never sent: `/actions`
/// (InstanceStart boots a VM), `/logger` and `/metrics` (they create files).
enum APIFuzz {
    static let routes: [(method: String, path: String)] = [
        ("PUT", "/boot-source"), ("PUT", "/machine-config"), ("PATCH", "/machine-config"), ("PUT", "/cpu-config"),
        ("PUT", "/drives/rootfs"), ("PATCH", "/drives/rootfs"), ("PUT", "/network-interfaces/eth0"),
        ("PATCH", "/network-interfaces/eth0"), ("PUT", "/vsock"), ("PUT", "/entropy"), ("PUT", "/balloon"),
        ("PATCH", "/balloon"), ("PATCH", "/balloon/statistics"), ("PUT", "/serial"), ("PATCH", "/vm"),
        ("GET", "/balloon"), ("GET", "/balloon/statistics"), ("GET", "/machine-config"), ("GET", "/"),
    ]

    static func isSafe(_ path: String) -> Bool {
        let first = path.split(separator: "/").first.map(String.init) ?? ""
        return !["actions", "logger", "metrics"].contains(first)
    }

    /// Input: one byte picks a route (values past the list take the route
    /// from the first line of the rest, "METHOD PATH"), the rest is the body.
    /// `GET /vm/config` follows, to write back what was accepted.
    static func request(_ data: UnsafeRawBufferPointer) {
        guard let selector = data.first else { return }
        var body = Array(data.dropFirst())
        var route: (method: String, path: String)
        if Int(selector) < routes.count {
            route = routes[Int(selector)]
        } else {
            let line = body.prefix { $0 != 0x0a }
            body = Array(body.dropFirst(line.count + 1))
            let words = String(decoding: line, as: UTF8.self).split(separator: " ", maxSplits: 1).map(String.init)
            guard words.count == 2 else { return }
            route = (words[0], words[1])
        }
        _ = try? JSONParser.parse(body, source: "fuzz")
        #if SWIFTVM_TESTABLE_API
        guard isSafe(route.path) else { return }
        let controller = makeController()
        let reply = controller.handle(method: route.method, path: route.path, body: body)
        _ = reply.faultMessage
        _ = controller.handle(method: "GET", path: "/vm/config", body: [])
        #endif
    }

    /// The input is a config file. One with a `logger` or `metrics` section
    /// is only parsed and decoded, not applied.
    static func configFile(_ data: UnsafeRawBufferPointer) {
        let bytes = Array(data)
        guard let root = try? JSONParser.parse(bytes, source: "fuzz") else { return }
        #if SWIFTVM_TESTABLE_API
        _ = try? JSONInput.decode(FullVmConfiguration.self, from: root, source: "fuzz")
        if case .object(let object) = root.content, object["logger"] != nil || object["metrics"] != nil { return }
        let controller = makeController()
        _ = try? FirecrackerConfigFile.apply(bytes, source: "fuzz", to: controller)
        _ = controller.handle(method: "GET", path: "/vm/config", body: [])
        #else
        _ = root
        #endif
    }

    #if SWIFTVM_TESTABLE_API
    static func makeController() -> FirecrackerController {
        FirecrackerController(
            instanceID: "fuzz", metrics: FirecrackerMetrics(instanceID: "fuzz"), configureLogger: { _ in nil },
            onStart: { _ in })
    }
    #endif
}
