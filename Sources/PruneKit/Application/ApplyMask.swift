/// Sets every weight whose mask byte is 0 to +0.0, in place, in the weights' own dtype.
/// The mask is checked (each byte 0 or 1) before any weight is written.
/// The C function is `pk_apply_mask`.
package func applyMask(_ mask: UnsafePointer<UInt8>, to weights: MatrixView) throws(PruneKitError) {
    try checkMaskBytes(mask, count: weights.rows * weights.cols)
    let rows = weights.rows, cols = weights.cols, size = weights.dtype.size
    // Memory-bound: rows split among workers when the matrix is large enough to pay for them.
    // A multiply by the 0/1 byte instead of a select, so the loops vectorize.
    let workers = rows * cols >= 1 << 20 ? resolveThreads(0, work: rows) : 1
    parallelFor(workers: workers) { worker in
        for r in partition(rows, workers: workers, worker: worker) {
            let row = weights.rowAddress(r), m = mask + r * cols
            switch size {
            case 4: zeroPruned(row.assumingMemoryBound(to: UInt32.self), m, cols)
            case 8: zeroPruned(row.assumingMemoryBound(to: UInt64.self), m, cols)
            default: zeroPruned(row.assumingMemoryBound(to: UInt16.self), m, cols)
            }
        }
    }
}

@inline(__always)
private func zeroPruned<E: FixedWidthInteger & UnsignedInteger>(_ p: UnsafeMutablePointer<E>, _ m: UnsafePointer<UInt8>, _ count: Int) {
    for j in 0..<count { p[j] &*= E(truncatingIfNeeded: m[j]) }
}

/// Applies `mask` to `weights` in place.
/// - Throws: `.invalidShape` if the shapes differ.
public func applyMask<S>(_ mask: Mask, to weights: inout Matrix<S>) throws(PruneKitError) {
    try mask.check(rows: weights.rows, cols: weights.cols)
    try weights.withMutableMatrixView { view throws(PruneKitError) in
        try mask.values.withUnsafeBufferPointer { m throws(PruneKitError) in try applyMask(m.baseAddress!, to: view) }
    }
}

/// The fraction of zeros of a mask overall, and per row into `rowSparsity` (rows doubles) if given.
/// The C function is `pk_mask_sparsity`.
package func maskSparsity(_ mask: UnsafePointer<UInt8>, rows: Int, cols: Int,
                         rowSparsity: UnsafeMutablePointer<Double>? = nil) throws(PruneKitError) -> Double {
    guard rows > 0, cols > 0 else { throw .invalidShape("mask must have positive rows and cols, got \(rows) x \(cols)") }
    let total = try checkedProduct(rows, cols, "mask")
    try checkMaskBytes(mask, count: total)
    var kept = 0
    for r in 0..<rows {
        var rowKept = 0
        let m = mask + r * cols
        for j in 0..<cols { rowKept &+= Int(m[j]) }
        rowSparsity?[r] = Double(cols - rowKept) / Double(cols)
        kept += rowKept
    }
    return Double(total - kept) / Double(total)
}
