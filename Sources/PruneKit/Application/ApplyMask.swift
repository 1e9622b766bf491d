/// Sets every weight whose mask byte is 0 to +0.0, in place, in the weights' own dtype.
/// The mask is checked (each byte 0 or 1) before any weight is written.
/// The C function is `pk_apply_mask`.
public func applyMask(_ mask: UnsafePointer<UInt8>, to weights: MatrixView) throws(PruneKitError) {
    try checkMaskBytes(mask, count: weights.rows * weights.cols)
    let size = weights.dtype.size
    for r in 0..<weights.rows {
        let row = weights.rowAddress(r)
        let m = mask + r * weights.cols
        switch size {
        case 4:
            let p = row.assumingMemoryBound(to: UInt32.self)
            for j in 0..<weights.cols { p[j] = m[j] == 0 ? 0 : p[j] }
        case 8:
            let p = row.assumingMemoryBound(to: UInt64.self)
            for j in 0..<weights.cols { p[j] = m[j] == 0 ? 0 : p[j] }
        default:
            let p = row.assumingMemoryBound(to: UInt16.self)
            for j in 0..<weights.cols { p[j] = m[j] == 0 ? 0 : p[j] }
        }
    }
}

/// Applies `mask` to `weights` in place.
/// - Throws: `.invalidShape` if the shapes differ.
public func applyMask<S>(_ mask: Mask, to weights: inout Matrix<S>) throws(PruneKitError) {
    guard mask.rows == weights.rows, mask.cols == weights.cols else {
        throw .invalidShape("mask is \(mask.rows) x \(mask.cols), weights are \(weights.rows) x \(weights.cols)")
    }
    try weights.withMutableMatrixView { view throws(PruneKitError) in
        try mask.values.withUnsafeBufferPointer { m throws(PruneKitError) in try applyMask(m.baseAddress!, to: view) }
    }
}

/// The fraction of zeros of a mask overall, and per row into `rowSparsity` (rows doubles) if given.
/// The C function is `pk_mask_sparsity`.
public func maskSparsity(_ mask: UnsafePointer<UInt8>, rows: Int, cols: Int,
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

func checkMaskBytes(_ mask: UnsafePointer<UInt8>, count: Int) throws(PruneKitError) {
    var worst: UInt8 = 0
    for i in 0..<count { worst = max(worst, mask[i]) }
    if worst > 1 {
        let i = (0..<count).first { mask[$0] > 1 }!
        throw .invalidArgument("mask byte at index \(i) is \(mask[i]); masks hold only 0 and 1")
    }
}
