import Glibc
import SwiftVMHost

/// Drive images for a selftest scenario: made from the test guest's pattern,
/// checked afterwards for exactly the writes the guest makes, then removed.
struct TestImages {
    static let sectors = 64
    let directory: String
    let drives: [DriveConfig]
    let kinds: [SelfTest.TestDrive.Kind]

    /// The disk test pattern, `sectors` sectors of it: byte j of sector k is
    /// (k * 7 + j) & 0xff. The test guest checks what it reads against the
    /// same formula (read_pattern() in Tests/TestGuest/virtio_blk.c); Swift
    /// code that needs the pattern uses this one definition.
    static func pattern(sectors: Int) -> [UInt8] {
        (0..<sectors).flatMap { k in (0..<512).map { j in UInt8((k * 7 + j) & 0xff) } }
    }

    /// `image` after the test guest wrote sectors 8...11 with
    /// ((k ^ 0x5a) + j * 3) & 0xff (write_pattern() in virtio_blk.c).
    static func afterGuestWrites(_ image: [UInt8]) -> [UInt8] {
        var bytes = image
        for k in 8...11 {
            for j in 0..<512 { bytes[k * 512 + j] = UInt8(((k ^ 0x5a) + j * 3) & 0xff) }
        }
        return bytes
    }

    init(_ specs: [SelfTest.TestDrive]) throws(SystemError) {
        kinds = specs.map(\.kind)
        guard !specs.isEmpty else {
            directory = ""
            drives = []
            return
        }
        var template = Array("/tmp/swiftvm-selftest-XXXXXX".utf8CString)
        guard let made = mkdtemp(&template) else { throw SystemError("mkdtemp", errno: errno) }
        directory = String(cString: made)
        var drives: [DriveConfig] = []
        for (index, spec) in specs.enumerated() {
            let path = "\(directory)/\(spec.kind.rawValue)\(index).img"
            let fd = try FileDescriptor.open(path, flags: O_WRONLY | O_CREAT | O_TRUNC)
            var failure: SystemError?
            TestImages.pattern(sectors: TestImages.sectors).withUnsafeBytes { bytes in
                do throws(SystemError) { try fd.writeAll(bytes) } catch { failure = error }
            }
            if let failure { throw failure }
            drives.append(DriveConfig(
                id: index == 0 ? "rootfs" : "disk\(index)", path: path, readOnly: spec.kind == .ro,
                cacheType: spec.kind == .wb ? .writeback : .unsafe, ioEngine: spec.engine, isRootDevice: index == 0))
        }
        self.drives = drives
    }

    /// One check: every image holds what the guest wrote, and the read-only one is untouched.
    func verify(_ scenario: String) -> SelfTest.Check {
        let original = TestImages.pattern(sectors: TestImages.sectors)
        let written = TestImages.afterGuestWrites(original)
        for (drive, kind) in zip(drives, kinds) {
            let expected = kind == .ro ? original : written
            guard let image = try? FileImage(path: drive.path, role: "drive"),
                let bytes = try? image.bytes(at: 0, count: Int(image.size))
            else {
                return SelfTest.Check(name: "\(scenario): drive images", passed: false, detail: "cannot read \(drive.path) back")
            }
            if bytes != expected {
                let offset = zip(bytes, expected).enumerated().first { $0.element.0 != $0.element.1 }?.offset
                    ?? min(bytes.count, expected.count)
                return SelfTest.Check(
                    name: "\(scenario): drive images", passed: false,
                    detail: "\(drive.id) (\(kind.rawValue)) differs from what the guest wrote at byte \(offset)")
            }
        }
        return SelfTest.Check(name: "\(scenario): drive images", passed: true, detail: "the guest's writes are on disk, byte for byte")
    }

    func remove() {
        for drive in drives { unlink(drive.path) }
        if !directory.isEmpty { rmdir(directory) }
    }
}
