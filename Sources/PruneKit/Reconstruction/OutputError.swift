/// A layer's output error on its calibration inputs, from the Gram matrix alone:
/// ||(W - W') X^T||^2 = sum_r d_r H d_r^T with d = W - W', and relative to ||W X^T||^2. This is
/// what SparseGPT and ADMM minimise, what the swap refinement lowers, and what a sensitivity
/// allocation (SBPF) ranks layers by at a probe sparsity.
/// - Returns: (absolute, relative); relative is 0 when the dense output is 0.
/// The C function is `pk_output_error`.
package func outputError(original: MatrixView, pruned: MatrixView, hessian: UnsafePointer<Double>,
                        hessianSize: Int, threads: Int = 0) throws(PruneKitError) -> (absolute: Double, relative: Double) {
    try checkReconstructionInputs(weights: original, hessian: hessian, hessianSize: hessianSize, output: pruned, threads: threads)
    let rows = original.rows, cols = original.cols
    let total = try checkedProduct(rows, cols, "weights")
    let d = try ScratchBuffer<Double>(count: 2 * total), product = try ScratchBuffer<Double>(count: 2 * total)
    let scratch = try ScratchBuffer<Double>(count: cols)
    defer { keepAlive(d, product, scratch) }
    // Rows 0..<rows: W - W'; rows..<2 rows: W. One GEMM with H for both.
    for r in 0..<rows {
        let w = d.base + (rows + r) * cols, diff = d.base + r * cols
        Double.load(original, row: r, from: 0, count: cols, into: w, scratch: scratch.base)
        Double.load(pruned, row: r, from: 0, count: cols, into: diff, scratch: scratch.base)
        for j in 0..<cols {
            guard diff[j].isFinite else { throw .nonFinite("pruned weight at row \(r), column \(j) is \(diff[j])") }
            diff[j] = w[j] - diff[j]
        }
    }
    Double.gemm(m: 2 * rows, n: cols, k: cols, alpha: 1, a: d.base, lda: cols, b: hessian, ldb: cols, beta: 0,
                c: product.base, ldc: cols)
    var error = 0.0, dense = 0.0
    for r in 0..<rows {
        for j in 0..<cols {
            error += d.base[r * cols + j] * product.base[r * cols + j]
            dense += d.base[(rows + r) * cols + j] * product.base[(rows + r) * cols + j]
        }
    }
    return (error, dense > 0 ? error / dense : 0)
}
