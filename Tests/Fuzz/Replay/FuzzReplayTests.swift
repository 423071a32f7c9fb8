import Foundation
import Testing
import SwiftVMFuzzTargets

/// Every committed fuzz input, seed corpus and regressions alike, through the
/// same entry function the fuzzer calls; an input that once crashed a parser
/// crashes this test if the bug comes back. Inputs live in
/// Tests/Fuzz/Corpus/<target>/ and Tests/Fuzz/Regressions/<target>/. Serialized:
/// the virtio targets share one guest memory, as they do in the fuzzer.
@Suite(.serialized) struct FuzzReplayTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()

    static func inputs(_ kind: String, _ target: String) -> [URL] {
        let folder = root.appendingPathComponent(kind).appendingPathComponent(target)
        let names = (try? FileManager.default.contentsOfDirectory(atPath: folder.path)) ?? []
        return names.filter { !$0.hasPrefix(".") }.sorted().map { folder.appendingPathComponent($0) }
    }

    @Test(arguments: FuzzTargets.all.map(\.name))
    func replay(target name: String) throws {
        let target = try #require(FuzzTargets.named(name))
        let corpus = Self.inputs("Corpus", name)
        #expect(!corpus.isEmpty, "no seed corpus for \(name)")
        for url in corpus + Self.inputs("Regressions", name) {
            let data = try Data(contentsOf: url)
            #expect(data.count <= target.maxLength, "\(url.lastPathComponent) is longer than -max_len")
            data.withUnsafeBytes { target.run($0) }
        }
    }

    /// Every target folder belongs to a target (a renamed target leaves none behind).
    @Test func foldersNameTargets() {
        let names = Set(FuzzTargets.all.map(\.name))
        for kind in ["Corpus", "Regressions"] {
            let folders = (try? FileManager.default.contentsOfDirectory(atPath: Self.root.appendingPathComponent(kind).path)) ?? []
            for folder in folders where !folder.hasPrefix(".") {
                #expect(names.contains(folder), "\(kind)/\(folder) names no fuzz target")
            }
        }
    }
}
