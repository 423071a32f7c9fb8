import Glibc
import SwiftVMHost
import SwiftVMBoot

extension CPUTemplateFile {
    /// The largest template file read; a template is a small JSON file.
    public static let fileSizeLimit = 16 << 20

    /// Reads and parses the template at `path`: a regular file, or a pipe
    /// (`--cpu-template <(jq ... t.json)`) read to its end. A named FIFO,
    /// a directory or a device is refused without waiting on it.
    public static func load(path: String) throws(VMMError) -> CPUTemplate {
        let image = try FileImage(path: path, role: "cpu template", accepting: [.regularFile, .pipe])
        let bytes = try image.readAll(limit: fileSizeLimit)
        do { return try parse(bytes, source: path) } catch {
            throw VMMError(.badCPUTemplate(path: path), error.description)
        }
    }
}
