#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// The soft, differentiable mask of PDP (Parameter-free Differentiable Pruning): for each
/// comparison group (a row for `.perRow`, the matrix for `.perLayer`) with k = floor(s * n) to
/// prune, the threshold t^2 is the midpoint between the largest w^2 that the magnitude mask
/// prunes and the smallest it keeps (pruningMask with `.magnitude`, so ties fall as everywhere
/// else), and m(w) = 1 / (1 + exp(-(w^2 - t^2) / temperature)), in float64. The derivative is
/// dm/dw = m (1 - m) 2 w / temperature with t held fixed (PDP does not differentiate the
/// threshold). With nothing to prune m = 1, with everything m = 0 (both with derivative 0).
/// The hard mask of the same selection (`pruningMask` with `.magnitude`) hardens it: exact count,
/// and it keeps the entries of highest m.
/// - Parameters:
///   - mask: rows * cols floats, dense row-major.
///   - derivative: rows * cols floats, or nil.
/// - Throws: `.invalidArgument` for a temperature that is not finite and positive or a selection
///   that is not per row or per layer; the statuses of `pk_mask`. Nothing is written on error.
/// The C function is `pk_soft_mask`.
package func softMask(weights: MatrixView, selection: Selection, temperature: Double, threads: Int = 0,
                     into mask: UnsafeMutablePointer<Float>, derivative: UnsafeMutablePointer<Float>?) throws(PruneKitError) {
    guard temperature.isFinite, temperature > 0 else {
        throw .invalidArgument("temperature must be finite and > 0, got \(temperature)")
    }
    let perRow: Bool
    switch selection {
    case .perRow: perRow = true
    case .perLayer, .global: perRow = false
    case .nm: throw .invalidArgument("soft masks take a per-row or per-layer selection, not N:M")
    }
    let rows = weights.rows, cols = weights.cols
    let hard = try ScratchBuffer<UInt8>(count: weights.count)
    defer { keepAlive(hard) }
    try pruningMask(weights: weights, criterion: .magnitude, selection: selection, threads: threads, into: hard.base)
    let scratch = try ScratchBuffer<Double>(count: cols)
    defer { keepAlive(scratch) }
    // The threshold of each group from the hard mask.
    let groups = perRow ? rows : 1
    var largestPruned = [Double](repeating: -.infinity, count: groups)
    var smallestKept = [Double](repeating: .infinity, count: groups)
    for r in 0..<rows {
        let w = weights.doubles(row: r, count: cols, scratch: scratch.base)
        let g = perRow ? r : 0
        for j in 0..<cols {
            let square = w[j] * w[j]
            if hard.base[r * cols + j] == 0 {
                largestPruned[g] = max(largestPruned[g], square)
            } else {
                smallestKept[g] = min(smallestKept[g], square)
            }
        }
    }
    let thresholds = (0..<groups).map { g -> Double in
        if largestPruned[g] == -.infinity { return -.infinity }
        if smallestKept[g] == .infinity { return .infinity }
        return (largestPruned[g] + smallestKept[g]) / 2
    }
    for r in 0..<rows {
        let w = weights.doubles(row: r, count: cols, scratch: scratch.base)
        let t2 = thresholds[perRow ? r : 0]
        for j in 0..<cols {
            let m: Double = t2 == -.infinity ? 1 : t2 == .infinity ? 0 : 1 / (1 + exp(-(w[j] * w[j] - t2) / temperature))
            mask[r * cols + j] = Float(m)
            derivative?[r * cols + j] = Float(m * (1 - m) * 2 * w[j] / temperature)
        }
    }
}

/// The soft, differentiable mask (PDP) of `weights` and its derivative dm/dw, as `Matrix<Float>`
/// of the weights' shape; see the pointer-based form above for the formula.
///
///     let (m, dm) = try softMask(for: w, selection: .perRow(sparsity: 0.5), temperature: 0.01)
///
/// - Throws: `.invalidArgument` for a temperature that is not finite and positive or a selection
///   that is not per row or per layer; the errors of `pruningMask`.
/// The C function is `pk_soft_mask`.
public func softMask(for weights: some MatrixRepresentable, selection: Selection, temperature: Double,
                     threads: Int = 0) throws(PruneKitError) -> (mask: Matrix<Float>, derivative: Matrix<Float>) {
    let count = try checkedProduct(weights.rows, weights.cols, "weights")
    var mask = [Float](repeating: 0, count: count), derivative = [Float](repeating: 0, count: count)
    try weights.withMatrixView { view throws(PruneKitError) in
        try mask.withUnsafeMutableBufferPointer { m throws(PruneKitError) in
            try derivative.withUnsafeMutableBufferPointer { d throws(PruneKitError) in
                try softMask(weights: view, selection: selection, temperature: temperature, threads: threads,
                             into: m.baseAddress!, derivative: d.baseAddress!)
            }
        }
    }
    return (try Matrix(rows: weights.rows, cols: weights.cols, values: mask),
            try Matrix(rows: weights.rows, cols: weights.cols, values: derivative))
}
