import SwiftVM

/// A Firecracker JSON config file (`--config-file`): the same sections as
/// `GET /vm/config` returns (`boot-source`, `machine-config`, `cpu-config`,
/// `drives`, `network-interfaces`, `vsock`, `balloon`, `entropy`, `logger`,
/// `metrics`), each applied through the same checks as the API request that
/// sets it, in the order Firecracker applies them. Errors name the JSON
/// path of the bad value.
enum FirecrackerConfigFile {
    struct Failure: Error, CustomStringConvertible {
        var description: String
    }

    static func apply(_ bytes: [UInt8], source: String, to controller: FirecrackerController) throws(Failure) {
        let root: JSONValue
        let config: FullVmConfiguration
        do {
            root = try JSONParser.parse(bytes, source: source)
            config = try JSONInput.decode(FullVmConfiguration.self, from: root, source: source)
        } catch { throw Failure(description: "invalid config file \(error.description)") }
        if config.mmdsConfig != nil {
            throw Failure(description: "\(source): mmds-config: the metadata service (MMDS) is not supported by swiftvm")
        }
        guard config.bootSource != nil else {
            throw Failure(description: "\(source): boot-source is required (kernel_image_path at least)")
        }

        /// Applies one section as the API request `method path` with `body`.
        func put(_ section: String, _ method: String, _ path: String, _ body: [UInt8]) throws(Failure) {
            let reply = controller.handle(method: method, path: path, body: body)
            guard reply.status < 300 else {
                throw Failure(description: "\(source): \(section): \(reply.faultMessage ?? "refused (\(reply.status))")")
            }
        }
        func member(_ key: String) -> JSONValue? {
            if case .object(let object) = root.content { return object[key]?.value }
            return nil
        }
        func items(_ key: String) -> [JSONValue] {
            if case .array(let values)? = member(key)?.content { return values }
            return []
        }

        if let logger = member("logger") { try put("logger", "PUT", "/logger", JSONOutput.encode(logger)) }
        if let metrics = member("metrics") { try put("metrics", "PUT", "/metrics", JSONOutput.encode(metrics)) }
        if let boot = member("boot-source") { try put("boot-source", "PUT", "/boot-source", JSONOutput.encode(boot)) }
        if let machine = member("machine-config") {
            try put("machine-config", "PUT", "/machine-config", JSONOutput.encode(machine))
        }
        if let cpu = member("cpu-config") { try put("cpu-config", "PUT", "/cpu-config", JSONOutput.encode(cpu)) }
        for (index, drive) in zip(config.drives ?? [], items("drives")).enumerated().map({ ($0, $1) }) {
            try put("drives[\(index)]", "PUT", "/drives/\(drive.0.driveId)", JSONOutput.encode(drive.1))
        }
        for (index, net) in zip(config.networkInterfaces ?? [], items("network-interfaces")).enumerated().map({ ($0, $1) }) {
            try put("network-interfaces[\(index)]", "PUT", "/network-interfaces/\(net.0.ifaceId)", JSONOutput.encode(net.1))
        }
        if let vsock = member("vsock") { try put("vsock", "PUT", "/vsock", JSONOutput.encode(vsock)) }
        if let balloon = member("balloon") { try put("balloon", "PUT", "/balloon", JSONOutput.encode(balloon)) }
        if let entropy = member("entropy") { try put("entropy", "PUT", "/entropy", JSONOutput.encode(entropy)) }
    }
}
