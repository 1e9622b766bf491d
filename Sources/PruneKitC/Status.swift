// Status codes, the thread-local error message, and reading the header's argument structs.
// Every exported function funnels through `run`, so a Swift error always becomes a status
// plus a message and never reaches the host as a trap.
import CPruneKit
import PruneKit

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// Holds the message of the last failed call, per thread (malloc'd, freed on thread exit).
let lastErrorKey: pthread_key_t = {
    var key = pthread_key_t()
    pthread_key_create(&key) { free($0) }
    return key
}()

func setLastError(_ message: String) {
    let copy = strdup(message)
    let previous = pthread_getspecific(lastErrorKey)
    pthread_setspecific(lastErrorKey, copy)
    free(previous)
}

func cString(_ s: StaticString) -> UnsafePointer<CChar> {
    UnsafeRawPointer(s.utf8Start).assumingMemoryBound(to: CChar.self)
}

extension PruneKitStatus {
    var code: pk_status { pk_status(rawValue) }
}

/// Runs the body of exported function `function`; maps a thrown error to its status and
/// records the message for pk_last_error.
@inline(__always)
func run(_ function: StaticString, _ body: () throws(PruneKitError) -> Void) -> pk_status {
    do throws(PruneKitError) {
        try body()
        return PruneKitStatus.ok.code
    } catch {
        setLastError("\(function): \(error.message)")
        return error.status.code
    }
}

func nullPointer(_ name: String) -> PruneKitError { PruneKitError(.nullPointer, "\(name) is NULL") }

/// A Wanda or STADE criterion without its per-input-column feature scales.
func missingFeatures(_ name: String, kind: Int32) -> PruneKitError {
    let criterion = kind == Int32(PK_CRITERION_WANDA.rawValue) ? "wanda" : "stade"
    return PruneKitError(.nullPointer, "\(name)->feature_values is NULL: the \(criterion) criterion needs features "
        + "(one scale per input column, e.g. the statistics' L2 norms)")
}

/// The body of every pk_*_init: `argument` (NULL is an error) receives the defaults.
func initialize<T>(_ function: StaticString, _ pointer: UnsafeMutablePointer<T>?, _ argument: String = "options",
                   to defaults: @autoclosure () -> T) -> pk_status {
    run(function) { () throws(PruneKitError) in
        guard let pointer else { throw nullPointer(argument) }
        pointer.pointee = defaults()
    }
}

/// Copies an option struct that starts with `size_t struct_size`: reads only the bytes the
/// caller declared; a larger struct from a newer header is accepted only if the fields this
/// library does not know are all zero.
/// `minimum`: the size of the struct's first released layout, when fields were appended since
/// (a caller compiled against it declares that size; the appended fields keep their defaults).
func readOptions<T>(_ pointer: UnsafePointer<T>?, name: String, defaults: T, minimum: Int? = nil) throws(PruneKitError) -> T {
    guard let pointer else { throw nullPointer(name) }
    let raw = UnsafeRawPointer(pointer)
    let declared = raw.load(as: Int.self)
    let known = MemoryLayout<T>.size
    if let minimum, declared >= minimum, declared < known {
        var result = defaults
        withUnsafeMutableBytes(of: &result) { out in
            out.copyMemory(from: UnsafeRawBufferPointer(start: raw, count: declared))
            out.storeBytes(of: known, toByteOffset: 0, as: Int.self)
        }
        return result
    }
    guard declared >= known else {
        throw PruneKitError(.structSize, "\(name)->struct_size is \(declared), at least \(minimum ?? known) is needed (use the _init function)")
    }
    for offset in known..<declared where raw.load(fromByteOffset: offset, as: UInt8.self) != 0 {
        throw PruneKitError(.structSize,
            "\(name) sets fields this library (\(PK_VERSION_STRING)) does not know (struct_size \(declared) > \(known))")
    }
    var result = defaults
    withUnsafeMutableBytes(of: &result) { $0.copyMemory(from: UnsafeRawBufferPointer(start: raw, count: known)) }
    return result
}

func dtype(_ raw: Int32, _ name: String) throws(PruneKitError) -> DType {
    guard let dtype = DType(rawValue: raw) else {
        throw PruneKitError(.unsupportedDType, "\(name) dtype \(raw) is not a pk_dtype (0 float32, 1 float64, 2 float16, 3 bfloat16)")
    }
    return dtype
}

func matrixView(_ pointer: UnsafePointer<pk_matrix>?, _ name: String) throws(PruneKitError) -> MatrixView {
    guard let m = pointer?.pointee else { throw nullPointer(name) }
    return try matrixView(m, name)
}

func matrixView(_ m: pk_matrix, _ name: String) throws(PruneKitError) -> MatrixView {
    guard let data = m.data else { throw nullPointer("\(name)->data") }
    let type = try dtype(m.dtype, name)
    return try MatrixView(base: data, dtype: type, rows: Int(m.rows), cols: Int(m.cols),
                          rowStride: Int(m.row_stride), name: name)
}

/// `count` matrices of a C array argument (the caller has checked `pointer` for NULL), named
/// `name[i]` in messages.
func matrixViews(_ pointer: UnsafePointer<pk_matrix>, count: Int, _ name: String) throws(PruneKitError) -> [MatrixView] {
    var views: [MatrixView] = []
    for i in 0..<count { views.append(try matrixView(pointer[i], "\(name)[\(i)]")) }
    return views
}

func criterionView(_ pointer: UnsafePointer<pk_criterion>?, _ name: String) throws(PruneKitError) -> CriterionView {
    let c = try readOptions(pointer, name: name, defaults: criterionDefaults())
    switch UInt32(bitPattern: c.kind) {
    case PK_CRITERION_MAGNITUDE.rawValue: return .magnitude
    case PK_CRITERION_RANDOM.rawValue: return .random(seed: c.seed)
    case PK_CRITERION_SCORES.rawValue: return .scores
    case PK_CRITERION_WANDA.rawValue, PK_CRITERION_STADE.rawValue:
        guard let values = c.feature_values else { throw missingFeatures(name, kind: c.kind) }
        guard c.feature_count >= 0 else { throw .init(.invalidShape, "\(name)->feature_count is negative (\(c.feature_count))") }
        let buffer = UnsafeBufferPointer(start: values, count: Int(c.feature_count))
        return c.kind == Int32(PK_CRITERION_WANDA.rawValue) ? .wanda(featureValues: buffer) : .stade(featureValues: buffer)
    case PK_CRITERION_TAYLOR.rawValue:
        return .taylor(gradient: try matrixView(c.gradient, "\(name)->gradient"))
    default:
        throw PruneKitError(.invalidArgument, "\(name)->kind \(c.kind) is not a pk_criterion_kind")
    }
}

func selection(_ pointer: UnsafePointer<pk_selection>?) throws(PruneKitError) -> (Selection, threads: Int) {
    let s = try readOptions(pointer, name: "selection", defaults: selectionDefaults())
    let selection: Selection
    switch UInt32(bitPattern: s.scope) {
    case PK_SCOPE_ROW.rawValue: selection = .perRow(sparsity: s.sparsity)
    case PK_SCOPE_LAYER.rawValue: selection = .perLayer(sparsity: s.sparsity)
    case PK_SCOPE_GLOBAL.rawValue: selection = .global(sparsity: s.sparsity)
    case PK_SCOPE_NM.rawValue: selection = .nm(n: Int(s.n), m: Int(s.m))
    default: throw PruneKitError(.invalidArgument, "selection->scope \(s.scope) is not a pk_scope")
    }
    guard s.num_threads >= 0 else {
        throw PruneKitError(.invalidArgument, "selection->num_threads must be >= 0, got \(s.num_threads)")
    }
    return (selection, Int(s.num_threads))
}

// MARK: - Implements the status functions of prunekit.h

/// Implements `const char *pk_status_string(pk_status status)`.
@c @implementation
public func pk_status_string(_ status: pk_status) -> UnsafePointer<CChar>! {
    guard let known = PruneKitStatus(rawValue: status) else { return cString("PK_UNKNOWN_STATUS") }
    switch known {
    case .ok: return cString("PK_OK")
    case .nullPointer: return cString("PK_ERROR_NULL_POINTER")
    case .invalidArgument: return cString("PK_ERROR_INVALID_ARGUMENT")
    case .invalidShape: return cString("PK_ERROR_INVALID_SHAPE")
    case .unsupportedDType: return cString("PK_ERROR_UNSUPPORTED_DTYPE")
    case .nonFinite: return cString("PK_ERROR_NON_FINITE")
    case .structSize: return cString("PK_ERROR_STRUCT_SIZE")
    case .outOfMemory: return cString("PK_ERROR_OUT_OF_MEMORY")
    case .corruptData: return cString("PK_ERROR_CORRUPT_DATA")
    case .bufferTooSmall: return cString("PK_ERROR_BUFFER_TOO_SMALL")
    case .internal: return cString("PK_ERROR_INTERNAL")
    case .numeric: return cString("PK_ERROR_NUMERIC")
    case .cancelled: return cString("PK_ERROR_CANCELLED")
    }
}

/// Implements `const char *pk_last_error(void)`.
@c @implementation
public func pk_last_error() -> UnsafePointer<CChar>! {
    if let message = pthread_getspecific(lastErrorKey) {
        return UnsafePointer(message.assumingMemoryBound(to: CChar.self))
    }
    return cString("")
}
