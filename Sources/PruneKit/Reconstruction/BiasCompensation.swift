/// Bias compensation: a layer with a bias absorbs the mean output shift of pruning,
/// b'_r = b_r + sum_j (W_rj - W'_rj) mean_j, so that the pruned layer's mean output is the dense
/// one's; the rest of the error, (W - W')(x - mean), is what a reconstruction on the centred Gram
/// matrix (`ActivationStatistics.centeredGram`) minimises. Works after any method: masks alone
/// (W' = W * mask) or weight updates (SparseGPT, ADMM).
/// - Parameters:
///   - original: the weights before pruning (rows x cols).
///   - pruned: the weights after pruning (same shape, any dtype).
///   - mean: the layer inputs' mean per feature (cols), e.g. from the statistics accumulator.
///   - bias: 1 x rows, updated in place (any dtype); written only after every check passed.
/// The C function is `pk_compensate_bias`.
package func compensateBias(original: MatrixView, pruned: MatrixView, mean: UnsafePointer<Double>, features: Int,
                           bias: MatrixView) throws(PruneKitError) {
    let rows = original.rows, cols = original.cols
    guard pruned.rows == rows, pruned.cols == cols else {
        throw .invalidShape("pruned is \(pruned.rows) x \(pruned.cols), original is \(rows) x \(cols)")
    }
    guard features == cols else { throw .invalidShape("mean has \(features) entries, the weights have \(cols) columns") }
    guard bias.rows == 1, bias.cols == rows else {
        throw .invalidShape("bias is \(bias.rows) x \(bias.cols), 1 x \(rows) needed")
    }
    for j in 0..<cols where !mean[j].isFinite { throw .nonFinite("mean at \(j) is \(mean[j])") }
    let a = try ScratchBuffer<Double>(count: cols), b = try ScratchBuffer<Double>(count: cols)
    let current = try ScratchBuffer<Double>(count: rows), updated = try ScratchBuffer<Double>(count: rows)
    defer { keepAlive(a, b, current, updated) }
    let biasRow = bias.doubles(row: 0, count: rows, scratch: current.base)
    for r in 0..<rows {
        let w = original.doubles(row: r, count: cols, scratch: a.base)
        let q = pruned.doubles(row: r, count: cols, scratch: b.base)
        var shift = 0.0
        for j in 0..<cols {
            guard w[j].isFinite, q[j].isFinite else {
                throw .nonFinite("weight at row \(r), column \(j) is \(w[j].isFinite ? q[j] : w[j])")
            }
            shift += (w[j] - q[j]) * mean[j]
        }
        guard biasRow[r].isFinite else { throw .nonFinite("bias at \(r) is \(biasRow[r])") }
        updated.base[r] = biasRow[r] + shift
    }
    try OBS<Double>.storeRows(updated.base, rows: 1, cols: rows, into: bias, threads: 1)  // one row: nothing to split
}
