import Glibc
import SwiftVMHost
import SwiftVMBoot

extension CPUTemplateFile {
    /// Reads and parses the template at `path`.
    public static func load(path: String) throws(VMMError) -> CPUTemplate {
        let image = try FileImage(path: path, role: "cpu template")
        guard image.size <= 16 << 20 else {
            throw VMMError(.badInput, "cpu template \(path) is \(image.size >> 20) MiB; a template is a small JSON file")
        }
        let bytes: [UInt8]
        do { bytes = try image.bytes(at: 0, count: Int(image.size)) } catch {
            throw VMMError(.badInput, "cpu template \(path): \(error)")
        }
        do { return try parse(bytes, source: path) } catch {
            throw VMMError(.badInput, error.description)
        }
    }
}
