/// Output error, bias compensation and swap refinement over owned matrices: the safe Swift API
/// of `pk_output_error`, `pk_compensate_bias` and `pk_refine_mask`. Array lengths are checked
/// here, so the pointer-based core never reads past an array.

/// A layer's output error on its calibration inputs from the Gram matrix alone:
/// ||(W - W') X^T||^2 = sum_r d_r H d_r^T with d = original - pruned, and that relative to
/// ||W X^T||^2 (0 when the latter is 0).
///
///     let (error, relative) = try outputError(original: w, pruned: pruned, hessian: stats.gram())
///
/// - Parameter hessian: X^T X (or any positive multiple), cols x cols row-major.
/// - Throws: `.invalidShape` for shapes that disagree, `.invalidArgument` for a non-symmetric
///   hessian, `.nonFinite`.
/// The C function is `pk_output_error`.
public func outputError<S, T>(original: Matrix<S>, pruned: Matrix<T>, hessian: [Double],
                              threads: Int = 0) throws(PruneKitError) -> (absolute: Double, relative: Double) {
    try withHessian(hessian, cols: original.cols) { h throws(PruneKitError) in
        try original.withMatrixView { o throws(PruneKitError) in
            try pruned.withMatrixView { p throws(PruneKitError) in
                try outputError(original: o, pruned: p, hessian: h, hessianSize: original.cols, threads: threads)
            }
        }
    }
}

/// The bias after compensating the mean output shift of pruning:
/// b[r] + sum_j (original[r][j] - pruned[r][j]) mean[j].
/// - Parameters:
///   - mean: the layer inputs' mean per feature (cols), e.g. `ActivationStatistics.mean()`.
///   - bias: 1 x rows, any scalar type; the result has its type.
/// - Throws: `.invalidShape` for shapes that disagree, `.nonFinite`, `.numeric` if the
///   compensated bias overflows its type.
/// The C function is `pk_compensate_bias`.
public func compensatedBias<S, T, B>(original: Matrix<S>, pruned: Matrix<T>, mean: [Double],
                                     bias: Matrix<B>) throws(PruneKitError) -> Matrix<B> {
    guard mean.count == original.cols else {
        throw .invalidShape("mean has \(mean.count) entries, the layer has \(original.cols) inputs")
    }
    var out = bias
    try original.withMatrixView { o throws(PruneKitError) in
        try pruned.withMatrixView { p throws(PruneKitError) in
            try out.withMutableMatrixView { b throws(PruneKitError) in
                try mean.withUnsafeBufferPointer { m throws(PruneKitError) in
                    try compensateBias(original: o, pruned: p, mean: m.baseAddress!, features: mean.count, bias: b)
                }
            }
        }
    }
    return out
}

/// `mask` refined by swaps that lower each row's exact output error with the weights as they
/// are (SparseSwaps, DSnoT); per-row counts (and an n:m pattern) are kept.
/// - Parameter hessian: X^T X (or any positive multiple), cols x cols row-major.
/// - Returns: the refined mask and the number of swaps made.
/// - Throws: `.invalidShape` for shapes that disagree, `.invalidArgument` for bad options or a
///   mask that is not n:m for `.nm`, `.nonFinite`.
/// The C function is `pk_refine_mask`.
public func refinedMask<S>(_ mask: Mask, weights: Matrix<S>, hessian: [Double],
                           options: SwapOptions = .init()) throws(PruneKitError) -> (mask: Mask, swaps: Int) {
    try mask.check(rows: weights.rows, cols: weights.cols)
    var bytes = mask.values
    let swaps = try withHessian(hessian, cols: weights.cols) { h throws(PruneKitError) -> Int in
        try weights.withMatrixView { w throws(PruneKitError) -> Int in
            try bytes.withUnsafeMutableBufferPointer { m throws(PruneKitError) -> Int in
                try refineMask(weights: w, hessian: h, hessianSize: weights.cols, options: options, mask: m.baseAddress!)
            }
        }
    }
    return (try Mask(rows: mask.rows, cols: mask.cols, values: bytes), swaps)
}
