// The reconstruction functions of prunekit.h.
import CPruneKit
import PruneKit

func reconstructionDefaults() -> pk_reconstruction_options {
    pk_reconstruction_options(
        struct_size: MemoryLayout<pk_reconstruction_options>.size, scope: Int32(PK_SCOPE_LAYER.rawValue),
        precision: Int32(PK_PRECISION_FLOAT32.rawValue), sparsity: 0.5, n: 2, m: 4, block_size: 128,
        dampening: 0.01, max_dampening_retries: 4, num_threads: 0)
}

func reconstructionOptions(_ pointer: UnsafePointer<pk_reconstruction_options>?) throws(PruneKitError) -> ReconstructionOptions {
    let o = try readOptions(pointer, name: "options", defaults: reconstructionDefaults())
    let pattern: ReconstructionOptions.Pattern
    switch UInt32(bitPattern: o.scope) {
    case PK_SCOPE_LAYER.rawValue: pattern = .unstructured(sparsity: o.sparsity)
    case PK_SCOPE_NM.rawValue: pattern = .nm(n: Int(o.n), m: Int(o.m))
    default:
        throw PruneKitError(.invalidArgument, "options->scope \(o.scope) is not PK_SCOPE_LAYER or PK_SCOPE_NM")
    }
    guard let precision = Precision(rawValue: o.precision) else {
        throw PruneKitError(.invalidArgument, "options->precision \(o.precision) is not a pk_precision")
    }
    guard o.block_size > 0, o.block_size <= Int64(Int32.max) else {
        throw PruneKitError(.invalidArgument, "options->block_size must be positive, got \(o.block_size)")
    }
    return ReconstructionOptions(pattern: pattern, blockSize: Int(o.block_size), dampening: o.dampening,
                                 maxDampeningRetries: Int(o.max_dampening_retries), precision: precision,
                                 threads: Int(o.num_threads))
}

/// The Hessian pointer checked for NULL and a sane size.
func hessianArgument(_ hessian: UnsafePointer<Double>?, _ size: Int64) throws(PruneKitError) -> UnsafePointer<Double> {
    guard let hessian else { throw nullPointer("hessian") }
    guard size > 0, size <= 1 << 20 else { throw PruneKitError(.invalidShape, "hessian_size \(size) is out of range") }
    return hessian
}

/// Implements `pk_status pk_reconstruction_options_init(pk_reconstruction_options *options)`.
@c @implementation
public func pk_reconstruction_options_init(_ options: UnsafeMutablePointer<pk_reconstruction_options>?) -> pk_status {
    run("pk_reconstruction_options_init") { () throws(PruneKitError) in
        guard let options else { throw nullPointer("options") }
        options.pointee = reconstructionDefaults()
    }
}

/// Implements `pk_status pk_sparsegpt(const pk_matrix *, const double *, int64_t,
/// const pk_reconstruction_options *, uint8_t *mask_out, const pk_matrix *weights_out)`.
@c @implementation
public func pk_sparsegpt(_ weights: UnsafePointer<pk_matrix>?, _ hessian: UnsafePointer<Double>?, _ hessianSize: Int64,
                         _ options: UnsafePointer<pk_reconstruction_options>?, _ maskOut: UnsafeMutablePointer<UInt8>?,
                         _ weightsOut: UnsafePointer<pk_matrix>?) -> pk_status {
    run("pk_sparsegpt") { () throws(PruneKitError) in
        let view = try matrixView(weights, "weights")
        let h = try hessianArgument(hessian, hessianSize)
        let o = try reconstructionOptions(options)
        guard let maskOut else { throw nullPointer("mask_out") }
        let out = try matrixView(weightsOut, "weights_out")
        try sparseGPT(weights: view, hessian: h, hessianSize: Int(hessianSize), options: o, mask: maskOut, output: out)
    }
}

/// Implements `pk_status pk_reconstruct(const pk_matrix *, const double *, int64_t, const uint8_t *mask,
/// const pk_reconstruction_options *, const pk_matrix *weights_out)`.
@c @implementation
public func pk_reconstruct(_ weights: UnsafePointer<pk_matrix>?, _ hessian: UnsafePointer<Double>?, _ hessianSize: Int64,
                           _ mask: UnsafePointer<UInt8>?, _ options: UnsafePointer<pk_reconstruction_options>?,
                           _ weightsOut: UnsafePointer<pk_matrix>?) -> pk_status {
    run("pk_reconstruct") { () throws(PruneKitError) in
        let view = try matrixView(weights, "weights")
        let h = try hessianArgument(hessian, hessianSize)
        guard let mask else { throw nullPointer("mask") }
        let o = try reconstructionOptions(options)
        let out = try matrixView(weightsOut, "weights_out")
        try reconstructWeights(weights: view, hessian: h, hessianSize: Int(hessianSize), mask: mask, options: o, output: out)
    }
}

/// Implements `pk_status pk_prune_columns(const pk_matrix *, const double *, int64_t,
/// const uint8_t *keep_columns, const pk_reconstruction_options *, const pk_matrix *weights_out)`.
@c @implementation
public func pk_prune_columns(_ weights: UnsafePointer<pk_matrix>?, _ hessian: UnsafePointer<Double>?, _ hessianSize: Int64,
                             _ keepColumns: UnsafePointer<UInt8>?, _ options: UnsafePointer<pk_reconstruction_options>?,
                             _ weightsOut: UnsafePointer<pk_matrix>?) -> pk_status {
    run("pk_prune_columns") { () throws(PruneKitError) in
        let view = try matrixView(weights, "weights")
        let h = try hessianArgument(hessian, hessianSize)
        guard let keepColumns else { throw nullPointer("keep_columns") }
        let o = try reconstructionOptions(options)
        let out = try matrixView(weightsOut, "weights_out")
        try pruneColumns(weights: view, hessian: h, hessianSize: Int(hessianSize), keepColumns: keepColumns, options: o, output: out)
    }
}
