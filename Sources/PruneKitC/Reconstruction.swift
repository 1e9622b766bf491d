// The reconstruction functions of prunekit.h.
import CPruneKit
import PruneKit

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
    initialize("pk_reconstruction_options_init", options, to: reconstructionDefaults())
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

func admmOptions(_ pointer: UnsafePointer<pk_admm_options>?) throws(PruneKitError) -> ADMMOptions {
    let o = try readOptions(pointer, name: "options", defaults: admmDefaults())
    let pattern: ADMMOptions.Pattern
    switch UInt32(bitPattern: o.scope) {
    case PK_SCOPE_LAYER.rawValue: pattern = .layer(sparsity: o.sparsity)
    case PK_SCOPE_ROW.rawValue: pattern = .row(sparsity: o.sparsity)
    case PK_SCOPE_NM.rawValue: pattern = .nm(n: Int(o.n), m: Int(o.m))
    default:
        throw PruneKitError(.invalidArgument, "options->scope \(o.scope) is not PK_SCOPE_LAYER, PK_SCOPE_ROW or PK_SCOPE_NM")
    }
    guard let precision = Precision(rawValue: o.precision) else {
        throw PruneKitError(.invalidArgument, "options->precision \(o.precision) is not a pk_precision")
    }
    return ADMMOptions(pattern: pattern, iterations: Int(o.iterations), rampIterations: Int(o.ramp_iterations), rho: o.rho,
                       rhoGrowth: o.rho_growth, rhoInterval: Int(o.rho_interval), refineIterations: Int(o.refine_iterations),
                       dampening: o.dampening, precision: precision, threads: Int(o.num_threads))
}

/// Implements `pk_status pk_admm_options_init(pk_admm_options *options)`.
@c @implementation
public func pk_admm_options_init(_ options: UnsafeMutablePointer<pk_admm_options>?) -> pk_status {
    initialize("pk_admm_options_init", options, to: admmDefaults())
}

/// Implements `pk_status pk_admm(const pk_matrix *, const double *, int64_t, const uint8_t *mask,
/// const pk_admm_options *, uint8_t *mask_out, const pk_matrix *weights_out)`.
@c @implementation
public func pk_admm(_ weights: UnsafePointer<pk_matrix>?, _ hessian: UnsafePointer<Double>?, _ hessianSize: Int64,
                    _ mask: UnsafePointer<UInt8>?, _ options: UnsafePointer<pk_admm_options>?,
                    _ maskOut: UnsafeMutablePointer<UInt8>?, _ weightsOut: UnsafePointer<pk_matrix>?) -> pk_status {
    run("pk_admm") { () throws(PruneKitError) in
        let view = try matrixView(weights, "weights")
        let h = try hessianArgument(hessian, hessianSize)
        let o = try admmOptions(options)
        let out = try matrixView(weightsOut, "weights_out")
        try admm(weights: view, hessian: h, hessianSize: Int(hessianSize), givenMask: mask, options: o, maskOut: maskOut,
                 output: out)
    }
}

/// Implements `pk_status pk_swap_options_init(pk_swap_options *options)`.
@c @implementation
public func pk_swap_options_init(_ options: UnsafeMutablePointer<pk_swap_options>?) -> pk_status {
    initialize("pk_swap_options_init", options, to: swapDefaults())
}

/// Implements `pk_status pk_refine_mask(const pk_matrix *, const double *, int64_t, const pk_swap_options *,
/// uint8_t *mask, int64_t *swaps_out)`.
@c @implementation
public func pk_refine_mask(_ weights: UnsafePointer<pk_matrix>?, _ hessian: UnsafePointer<Double>?, _ hessianSize: Int64,
                           _ options: UnsafePointer<pk_swap_options>?, _ mask: UnsafeMutablePointer<UInt8>?,
                           _ swapsOut: UnsafeMutablePointer<Int64>?) -> pk_status {
    run("pk_refine_mask") { () throws(PruneKitError) in
        let view = try matrixView(weights, "weights")
        let h = try hessianArgument(hessian, hessianSize)
        let o = try readOptions(options, name: "options", defaults: swapDefaults())
        let pattern: SwapOptions.Pattern
        switch UInt32(bitPattern: o.scope) {
        case PK_SCOPE_ROW.rawValue: pattern = .row
        case PK_SCOPE_NM.rawValue: pattern = .nm(n: Int(o.n), m: Int(o.m))
        default: throw PruneKitError(.invalidArgument, "options->scope \(o.scope) is not PK_SCOPE_ROW or PK_SCOPE_NM")
        }
        guard let mask else { throw nullPointer("mask") }
        let made = try refineMask(weights: view, hessian: h, hessianSize: Int(hessianSize),
                                  options: SwapOptions(pattern: pattern, maxSwaps: Int(o.max_swaps), candidates: Int(o.candidates),
                                                       threads: Int(o.num_threads)), mask: mask)
        swapsOut?.pointee = Int64(made)
    }
}

/// Implements `pk_status pk_allocate_sparsity(const int64_t *sizes, const double *importance, int64_t layers,
/// double sparsity, double spread, int64_t *pruned_out, double *sparsities_out)`.
@c @implementation
public func pk_allocate_sparsity(_ sizes: UnsafePointer<Int64>?, _ importance: UnsafePointer<Double>?, _ layers: Int64,
                                 _ sparsity: Double, _ spread: Double, _ prunedOut: UnsafeMutablePointer<Int64>?,
                                 _ sparsitiesOut: UnsafeMutablePointer<Double>?) -> pk_status {
    run("pk_allocate_sparsity") { () throws(PruneKitError) in
        guard let sizes else { throw nullPointer("sizes") }
        guard let importance else { throw nullPointer("importance") }
        guard layers > 0, layers <= 1 << 24 else { throw PruneKitError(.invalidShape, "layers must be in [1, 2^24], got \(layers)") }
        let count = Int(layers)
        let result = try allocateSparsity(sizes: (0..<count).map { Int(sizes[$0]) }, importance: Array(UnsafeBufferPointer(start: importance, count: count)),
                                          sparsity: sparsity, spread: spread)
        for l in 0..<count {
            prunedOut?[l] = Int64(result.pruned[l])
            sparsitiesOut?[l] = result.sparsities[l]
        }
    }
}

/// Implements `pk_status pk_outlier_ratio(const pk_matrix *, const pk_criterion *, double threshold, double *ratio_out)`.
@c @implementation
public func pk_outlier_ratio(_ weights: UnsafePointer<pk_matrix>?, _ criterion: UnsafePointer<pk_criterion>?, _ threshold: Double,
                             _ ratioOut: UnsafeMutablePointer<Double>?) -> pk_status {
    run("pk_outlier_ratio") { () throws(PruneKitError) in
        let view = try matrixView(weights, "weights")
        let c = try criterionView(criterion, "criterion")
        guard let ratioOut else { throw nullPointer("ratio_out") }
        ratioOut.pointee = try outlierRatio(weights: view, criterion: c, threshold: threshold)
    }
}

/// Implements `pk_status pk_compensate_bias(const pk_matrix *original, const pk_matrix *pruned, const double *mean,
/// int64_t features, const pk_matrix *bias)`.
@c @implementation
public func pk_compensate_bias(_ original: UnsafePointer<pk_matrix>?, _ pruned: UnsafePointer<pk_matrix>?,
                               _ mean: UnsafePointer<Double>?, _ features: Int64, _ bias: UnsafePointer<pk_matrix>?) -> pk_status {
    run("pk_compensate_bias") { () throws(PruneKitError) in
        let o = try matrixView(original, "original"), p = try matrixView(pruned, "pruned"), b = try matrixView(bias, "bias")
        guard let mean else { throw nullPointer("mean") }
        try compensateBias(original: o, pruned: p, mean: mean, features: Int(features), bias: b)
    }
}

/// Implements `pk_status pk_stats_centered_gram(const pk_stats *, double *out, int64_t length)`.
@c @implementation
public func pk_stats_centered_gram(_ stats: OpaquePointer?, _ out: UnsafeMutablePointer<Double>?, _ length: Int64) -> pk_status {
    run("pk_stats_centered_gram") { () throws(PruneKitError) in
        let s = try snapshot(stats)
        guard let out else { throw nullPointer("out") }
        guard length == Int64(s.features) * Int64(s.features) else {
            throw PruneKitError(.invalidShape, "out has length \(length), the Gram matrix has \(s.features * s.features) entries")
        }
        let g = try s.centeredGram()
        out.update(from: g, count: g.count)
    }
}

/// Implements `pk_status pk_output_error(const pk_matrix *original, const pk_matrix *pruned, const double *hessian,
/// int64_t hessian_size, double *error_out, double *relative_out)`.
@c @implementation
public func pk_output_error(_ original: UnsafePointer<pk_matrix>?, _ pruned: UnsafePointer<pk_matrix>?,
                            _ hessian: UnsafePointer<Double>?, _ hessianSize: Int64, _ errorOut: UnsafeMutablePointer<Double>?,
                            _ relativeOut: UnsafeMutablePointer<Double>?) -> pk_status {
    run("pk_output_error") { () throws(PruneKitError) in
        let o = try matrixView(original, "original"), p = try matrixView(pruned, "pruned")
        let h = try hessianArgument(hessian, hessianSize)
        let (absolute, relative) = try outputError(original: o, pruned: p, hessian: h, hessianSize: Int(hessianSize))
        errorOut?.pointee = absolute
        relativeOut?.pointee = relative
    }
}
