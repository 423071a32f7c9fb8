/// Why a flattened device tree could not be built. Most cases are mistakes in
/// the code driving ``FDTWriter``; ``stringContainsNUL(property:)`` can also
/// come from user input such as a kernel command line.
public enum FDTError: Error, Equatable, Sendable, CustomStringConvertible {
    /// A node name breaks Devicetree Specification v0.4 §2.2.1 (characters,
    /// length, or a unit address after `@`).
    case invalidNodeName(String)
    /// A property name breaks §2.2.4 (characters or length).
    case invalidPropertyName(String)
    /// The first node must be the root, named "", and there is only one root.
    case nodeOutsideRoot(String)
    /// A property was added while no node was open.
    case propertyOutsideNode(String)
    /// A node's properties must all come before its first subnode (§5.4.2).
    case propertyAfterSubnode(property: String, node: String)
    /// The same property name twice in one node.
    case duplicateProperty(property: String, node: String)
    /// `endNode()` with no open node.
    case unbalancedEndNode
    /// `finish()` while nodes are still open; `path` is the innermost.
    case unclosedNodes(count: Int, path: String)
    /// `finish()` before any node was written.
    case missingRoot
    /// A string value holds a NUL byte, which would end it early in the blob.
    case stringContainsNUL(property: String)
    /// The blob would not fit the header's 32-bit sizes and offsets.
    case tooLarge

    public var description: String {
        switch self {
        case .invalidNodeName(let name):
            "invalid device tree node name \"\(name)\": use 1 to 31 of 0-9 a-z A-Z , . _ + -, optionally followed by @unit-address"
        case .invalidPropertyName(let name):
            "invalid device tree property name \"\(name)\": use 1 to 31 of 0-9 a-z A-Z , . _ + ? # -"
        case .nodeOutsideRoot(let name):
            "device tree node \"\(name)\" is outside the root node: begin the root (\"\") first, and only once"
        case .propertyOutsideNode(let name):
            "device tree property \"\(name)\" is not inside any node"
        case .propertyAfterSubnode(let property, let node):
            "device tree property \"\(property)\" of \(node) comes after a subnode; a node's properties must precede its subnodes"
        case .duplicateProperty(let property, let node):
            "device tree property \"\(property)\" appears twice in \(node)"
        case .unbalancedEndNode:
            "device tree endNode() without a matching beginNode()"
        case .unclosedNodes(let count, let path):
            "device tree finished with \(count) node(s) still open, innermost \(path)"
        case .missingRoot:
            "device tree finished without a root node"
        case .stringContainsNUL(let property):
            "device tree property \"\(property)\" holds a NUL character, which device tree strings cannot contain"
        case .tooLarge:
            "device tree is larger than the 4 GiB a flattened device tree header can describe"
        }
    }
}
