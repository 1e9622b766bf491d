/// SparseGPT over owned matrices: the mask and the updated weights (same dtype as `weights`).
///
///     var stats = try ActivationStatistics(features: cols, gram: true)
///     try stats.accumulate(batch)
///     let (mask, pruned) = try sparseGPT(weights, hessian: stats.gram(), options: .init(pattern: .nm(n: 2, m: 4)))
///
/// - Parameter hessian: X^T X (or any positive multiple), cols x cols row-major.
/// - Throws: `PruneKitError`: `.invalidShape`, `.invalidArgument`, `.nonFinite`, `.numeric`.
public func sparseGPT<S>(_ weights: Matrix<S>, hessian: [Double], options: ReconstructionOptions = .init()) throws(PruneKitError) -> (mask: Mask, weights: Matrix<S>) {
    var maskBytes = [UInt8](repeating: 0, count: weights.rows * weights.cols)
    let output = try reconstructing(weights, hessian: hessian) { view, h, out throws(PruneKitError) in
        try maskBytes.withUnsafeMutableBufferPointer { m throws(PruneKitError) in
            try sparseGPT(weights: view, hessian: h, hessianSize: weights.cols, options: options, mask: m.baseAddress!, output: out)
        }
    }
    return (try Mask(rows: weights.rows, cols: weights.cols, values: maskBytes), output)
}

/// ADMM pruning with weight updates over owned matrices: the mask and the updated weights (same
/// dtype as `weights`). With `mask`, that mask's kept weights are updated instead of choosing one.
///
///     let (mask, pruned) = try admm(weights, hessian: stats.gram(), options: .init(pattern: .nm(n: 2, m: 4)))
///
/// - Parameter hessian: X^T X (or any positive multiple), cols x cols row-major.
/// - Throws: `PruneKitError`: `.invalidShape`, `.invalidArgument`, `.nonFinite`, `.numeric`.
public func admm<S>(_ weights: Matrix<S>, hessian: [Double], mask given: Mask? = nil,
                    options: ADMMOptions = .init()) throws(PruneKitError) -> (mask: Mask, weights: Matrix<S>) {
    try given?.check(rows: weights.rows, cols: weights.cols)
    var maskBytes = [UInt8](repeating: 0, count: weights.rows * weights.cols)
    let givenBytes = given?.values ?? []
    let output = try reconstructing(weights, hessian: hessian) { view, h, out throws(PruneKitError) in
        try maskBytes.withUnsafeMutableBufferPointer { m throws(PruneKitError) in
            try givenBytes.withUnsafeBufferPointer { g throws(PruneKitError) in
                try admm(weights: view, hessian: h, hessianSize: weights.cols, givenMask: given == nil ? nil : g.baseAddress,
                         options: options, maskOut: m.baseAddress!, output: out)
            }
        }
    }
    return (try Mask(rows: weights.rows, cols: weights.cols, values: maskBytes), output)
}

/// The SparseGPT update of the kept weights under `mask` (from any criterion).
public func reconstructWeights<S>(_ weights: Matrix<S>, hessian: [Double], mask: Mask,
                                  options: ReconstructionOptions = .init()) throws(PruneKitError) -> Matrix<S> {
    try mask.check(rows: weights.rows, cols: weights.cols)
    return try reconstructing(weights, hessian: hessian) { view, h, out throws(PruneKitError) in
        try mask.values.withUnsafeBufferPointer { m throws(PruneKitError) in
            try reconstructWeights(weights: view, hessian: h, hessianSize: weights.cols, mask: m.baseAddress!, options: options, output: out)
        }
    }
}

/// Removes the input columns where `keep` is false and compensates with the kept ones.
public func pruneColumns<S>(_ weights: Matrix<S>, hessian: [Double], keep: [Bool],
                            options: ReconstructionOptions = .init()) throws(PruneKitError) -> Matrix<S> {
    guard keep.count == weights.cols else { throw .invalidShape("keep has \(keep.count) entries, weights have \(weights.cols) columns") }
    let bytes = keep.map { UInt8($0 ? 1 : 0) }
    return try reconstructing(weights, hessian: hessian) { view, h, out throws(PruneKitError) in
        try bytes.withUnsafeBufferPointer { k throws(PruneKitError) in
            try pruneColumns(weights: view, hessian: h, hessianSize: weights.cols, keepColumns: k.baseAddress!, options: options, output: out)
        }
    }
}

/// Lends `weights`, the checked Hessian and a copy of the weights to write to `body`; returns the copy.
private func reconstructing<S>(_ weights: Matrix<S>, hessian: [Double],
                               _ body: (MatrixView, UnsafePointer<Double>, MatrixView) throws(PruneKitError) -> Void)
    throws(PruneKitError) -> Matrix<S> {
    var output = weights
    try withHessian(hessian, cols: weights.cols) { h throws(PruneKitError) in
        try weights.withMatrixView { view throws(PruneKitError) in
            try output.withMutableMatrixView { out throws(PruneKitError) in try body(view, h, out) }
        }
    }
    return output
}

/// Lends `hessian` (cols x cols, row-major) to `body` after checking its length.
func withHessian<R>(_ hessian: [Double], cols: Int, _ body: (UnsafePointer<Double>) throws(PruneKitError) -> R) throws(PruneKitError) -> R {
    guard hessian.count == cols * cols else {
        throw .invalidShape("hessian has \(hessian.count) entries, \(cols) x \(cols) = \(cols * cols) needed")
    }
    return try hessian.withUnsafeBufferPointer { h throws(PruneKitError) in try body(h.baseAddress!) }
}
