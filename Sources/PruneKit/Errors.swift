/// The outcome of a PruneKit operation. Raw values are pinned to `enum pk_status_code` in
/// include/prunekit.h (a test checks that they agree); new cases are only ever appended.
public enum PruneKitStatus: Int32, Sendable, CaseIterable {
    case ok = 0
    case nullPointer = 1
    case invalidArgument = 2
    case invalidShape = 3
    case unsupportedDType = 4
    case nonFinite = 5
    case structSize = 6
    case outOfMemory = 7
    case corruptData = 8
    case bufferTooSmall = 9
    case `internal` = 10
    /// The Hessian stays not positive definite after the dampening retries, or a result or
    /// accumulator would overflow (an updated weight beyond the output dtype, a statistics count
    /// or sum of squares beyond what an accumulator holds).
    case numeric = 11
    /// A host callback asked a loop to stop (a non-zero return, a Python exception, a Swift
    /// error): the host's weights are as they were before the call.
    case cancelled = 12

    /// The C name of the status, as `pk_status_string` returns it.
    public var name: String {
        switch self {
        case .ok: "PK_OK"
        case .nullPointer: "PK_ERROR_NULL_POINTER"
        case .invalidArgument: "PK_ERROR_INVALID_ARGUMENT"
        case .invalidShape: "PK_ERROR_INVALID_SHAPE"
        case .unsupportedDType: "PK_ERROR_UNSUPPORTED_DTYPE"
        case .nonFinite: "PK_ERROR_NON_FINITE"
        case .structSize: "PK_ERROR_STRUCT_SIZE"
        case .outOfMemory: "PK_ERROR_OUT_OF_MEMORY"
        case .corruptData: "PK_ERROR_CORRUPT_DATA"
        case .bufferTooSmall: "PK_ERROR_BUFFER_TOO_SMALL"
        case .internal: "PK_ERROR_INTERNAL"
        case .numeric: "PK_ERROR_NUMERIC"
        case .cancelled: "PK_ERROR_CANCELLED"
        }
    }
}

/// The error every throwing PruneKit function throws: a status and a message that names the
/// argument or position at fault. Nothing was written when it is thrown.
public struct PruneKitError: Error, Sendable, CustomStringConvertible, Equatable {
    public let status: PruneKitStatus
    public let message: String

    public init(_ status: PruneKitStatus, _ message: String) {
        self.status = status
        self.message = message
    }

    public var description: String { "\(status.name): \(message)" }

    static func invalidArgument(_ message: String) -> PruneKitError { .init(.invalidArgument, message) }
    static func invalidShape(_ message: String) -> PruneKitError { .init(.invalidShape, message) }
    static func nonFinite(_ message: String) -> PruneKitError { .init(.nonFinite, message) }
    static func corruptData(_ message: String) -> PruneKitError { .init(.corruptData, message) }
    static func outOfMemory(bytes: Int) -> PruneKitError {
        .init(.outOfMemory, "could not allocate \(bytes) bytes of scratch memory")
    }
}
