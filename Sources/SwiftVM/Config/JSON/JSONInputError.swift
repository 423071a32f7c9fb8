/// Why JSON input was refused, and where: the one error type of the JSON
/// parser and decoder.
///
/// `description` reads `source:line:column: path: problem`, e.g.
/// `vm.json:3:17: machine-config.vcpu_count: expected an integer from 0 to 255, found 300`.
public struct JSONInputError: Error, Equatable, Sendable, CustomStringConvertible {
    /// What was read: a file path, or a phrase such as "request body".
    public var source: String
    /// The JSON path of the offending value, `a.b[2].c`; empty for the whole document.
    public var path: String
    /// 1-based line and column where the offending value (or the bad byte) starts.
    public var line: Int
    public var column: Int
    /// What is wrong, and where it helps, what would be right.
    public var problem: String

    public init(source: String, path: String, line: Int, column: Int, problem: String) {
        self.source = source
        self.path = path
        self.line = line
        self.column = column
        self.problem = problem
    }

    public var description: String {
        path.isEmpty ? "\(source):\(line):\(column): \(problem)" : "\(source):\(line):\(column): \(path): \(problem)"
    }
}
