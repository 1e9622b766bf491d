/// The sparse formats over owned matrices and arrays: the safe Swift API of `SparseFormats`
/// (layouts in its comment and docs/sparse-formats.md). The array lengths are checked here, so
/// the pointer-based core never reads past an array.
///
///     let (values, metadata) = try SparseFormats.export24(pruned)
///     let dense = try SparseFormats.import24(values: values, metadata: metadata)   // == pruned
extension SparseFormats {
    /// The number of non-zero entries (+0.0 and -0.0 are zeros).
    /// - Throws: `.nonFinite` for a non-finite entry.
    /// The C function is `pk_count_nonzero`.
    public static func countNonZero<S>(_ weights: Matrix<S>) throws(PruneKitError) -> Int {
        try weights.withMatrixView { view throws(PruneKitError) in try countNonZero(view) }
    }

    /// 2:4 compression: `values` rows x cols/2 in the weights' scalar type and `metadata`
    /// rows x ceil(cols/8) bytes.
    /// - Throws: `.invalidShape` if cols is not divisible by 4, `.invalidArgument` for a group of
    ///   4 with more than 2 non-zeros, `.nonFinite`.
    /// The C function is `pk_export_24`.
    public static func export24<S>(_ weights: Matrix<S>) throws(PruneKitError) -> (values: Matrix<S>, metadata: [UInt8]) {
        guard weights.cols % 4 == 0 else {
            throw .invalidShape("2:4 compression needs cols divisible by 4, got \(weights.cols)")
        }
        var values = try Matrix<S>(rows: weights.rows, cols: weights.cols / 2,
                                   values: Array(repeating: S(0), count: weights.rows * weights.cols / 2))
        var metadata = [UInt8](repeating: 0, count: weights.rows * metadataBytes(cols: weights.cols))
        try weights.withMatrixView { view throws(PruneKitError) in
            try values.withMutableMatrixView { v throws(PruneKitError) in
                try metadata.withUnsafeMutableBufferPointer { m throws(PruneKitError) in
                    try export24(view, values: v.base, metadata: m.baseAddress!)
                }
            }
        }
        return (values, metadata)
    }

    /// The dense matrix (rows = values' rows, cols = 2 x values' cols) of a 2:4 compression.
    /// - Throws: `.invalidShape` for metadata of another length, `.corruptData` for metadata
    ///   whose positions do not increase.
    /// The C function is `pk_import_24`.
    public static func import24<S>(values: Matrix<S>, metadata: [UInt8]) throws(PruneKitError) -> Matrix<S> {
        let rows = values.rows, cols = values.cols * 2
        guard cols % 4 == 0 else { throw .invalidShape("2:4 values need an even number of columns, got \(values.cols)") }
        guard metadata.count == rows * metadataBytes(cols: cols) else {
            throw .invalidShape("metadata has \(metadata.count) bytes, \(rows) x \(cols) needs \(rows * metadataBytes(cols: cols))")
        }
        var dense = try Matrix<S>(rows: rows, cols: cols, values: Array(repeating: S(0), count: rows * cols))
        try values.withMatrixView { v throws(PruneKitError) in
            try dense.withMutableMatrixView { d throws(PruneKitError) in
                try metadata.withUnsafeBufferPointer { m throws(PruneKitError) in
                    try import24(values: UnsafeRawPointer(v.base), metadata: m.baseAddress!, into: d)
                }
            }
        }
        return dense
    }

    /// CSR: row offsets (rows + 1), the column of each non-zero (increasing within a row) and
    /// the non-zeros in row-major order.
    /// - Throws: `.nonFinite` for a non-finite entry.
    /// The C function is `pk_export_csr`.
    public static func exportCSR<S>(_ weights: Matrix<S>) throws(PruneKitError) -> (rowOffsets: [Int64], columns: [Int64], values: [S]) {
        let nnz = try countNonZero(weights)
        var rowOffsets = [Int64](repeating: 0, count: weights.rows + 1)
        var columns = [Int64](repeating: 0, count: max(nnz, 1))
        var values = [S](repeating: S(0), count: max(nnz, 1))
        try weights.withMatrixView { view throws(PruneKitError) in
            try rowOffsets.withUnsafeMutableBufferPointer { o throws(PruneKitError) in
                try columns.withUnsafeMutableBufferPointer { c throws(PruneKitError) in
                    try withMutableBytes(&values) { v throws(PruneKitError) in
                        try exportCSR(view, capacity: nnz, rowOffsets: o.baseAddress!, columns: c.baseAddress!, values: v)
                    }
                }
            }
        }
        return (rowOffsets, Array(columns.prefix(nnz)), Array(values.prefix(nnz)))
    }

    /// The dense matrix (rowOffsets.count - 1 rows, `cols` columns) of a CSR matrix.
    /// - Throws: `.invalidShape` for arrays whose lengths disagree with the offsets,
    ///   `.corruptData` for offsets not starting at 0 or decreasing, columns out of range or not
    ///   increasing within a row.
    /// The C function is `pk_import_csr`.
    public static func importCSR<S>(rowOffsets: [Int64], columns: [Int64], values: [S], cols: Int) throws(PruneKitError) -> Matrix<S> {
        let rows = rowOffsets.count - 1
        guard rows > 0 else { throw .invalidShape("rowOffsets needs rows + 1 entries, got \(rowOffsets.count)") }
        guard columns.count == values.count, rowOffsets[rows] == Int64(columns.count) else {
            throw .invalidShape("rowOffsets ends at \(rowOffsets[rows]); columns has \(columns.count) entries, values \(values.count)")
        }
        var dense = try Matrix<S>(rows: rows, cols: cols, values: Array(repeating: S(0), count: rows * cols))
        try dense.withMutableMatrixView { d throws(PruneKitError) in
            try rowOffsets.withUnsafeBufferPointer { o throws(PruneKitError) in
                // One spare element, so an empty matrix still lends a pointer.
                try (columns + [0]).withUnsafeBufferPointer { c throws(PruneKitError) in
                    try withBytes(values + [S(0)]) { v throws(PruneKitError) in
                        try importCSR(rowOffsets: o.baseAddress!, columns: c.baseAddress!, values: v, into: d)
                    }
                }
            }
        }
        return dense
    }

    /// Bit mask: rows x ceil(cols/8) bytes (bit j % 8 of byte j / 8 of a row: entry j is
    /// present) and the non-zeros in row-major order.
    /// - Throws: `.nonFinite` for a non-finite entry.
    /// The C function is `pk_export_bitmask`.
    public static func exportBitmask<S>(_ weights: Matrix<S>) throws(PruneKitError) -> (bits: [UInt8], values: [S]) {
        let nnz = try countNonZero(weights)
        var bits = [UInt8](repeating: 0, count: weights.rows * ((weights.cols + 7) / 8))
        var values = [S](repeating: S(0), count: max(nnz, 1))
        try weights.withMatrixView { view throws(PruneKitError) in
            try bits.withUnsafeMutableBufferPointer { b throws(PruneKitError) in
                try withMutableBytes(&values) { v throws(PruneKitError) in
                    try exportBitmask(view, capacity: nnz, bits: b.baseAddress!, values: v)
                }
            }
        }
        return (bits, Array(values.prefix(nnz)))
    }

    /// The dense `rows` x `cols` matrix of a bit mask and its values.
    /// - Throws: `.invalidShape` for bits of another length or values that are not one per
    ///   set bit, `.corruptData` for bits set past the last column.
    /// The C function is `pk_import_bitmask`.
    public static func importBitmask<S>(bits: [UInt8], values: [S], rows: Int, cols: Int) throws(PruneKitError) -> Matrix<S> {
        guard rows > 0, cols > 0 else { throw .invalidShape("a matrix must have positive rows and cols, got \(rows) x \(cols)") }
        let bytesPerRow = (cols + 7) / 8
        guard bits.count == rows * bytesPerRow else {
            throw .invalidShape("bits has \(bits.count) bytes, \(rows) x \(cols) needs \(rows * bytesPerRow)")
        }
        // Bits past the last column are the core's to report (corrupt data); count the others.
        var present = 0
        for r in 0..<rows {
            for j in 0..<cols where bits[r * bytesPerRow + j / 8] & (1 << (j % 8)) != 0 { present += 1 }
        }
        guard values.count == present else {
            throw .invalidShape("values has \(values.count) entries, the bits mark \(present)")
        }
        var dense = try Matrix<S>(rows: rows, cols: cols, values: Array(repeating: S(0), count: rows * cols))
        try dense.withMutableMatrixView { d throws(PruneKitError) in
            try bits.withUnsafeBufferPointer { b throws(PruneKitError) in
                try withBytes(values + [S(0)]) { v throws(PruneKitError) in
                    try importBitmask(bits: b.baseAddress!, values: v, into: d)
                }
            }
        }
        return dense
    }
}

/// An array's bytes for the pointer-based core (Array's own closures throw untyped errors).
private func withBytes<T, R>(_ array: [T], _ body: (UnsafeRawPointer) throws(PruneKitError) -> R) throws(PruneKitError) -> R {
    let result: Result<R, PruneKitError> = array.withUnsafeBytes { b in
        Result { () throws(PruneKitError) -> R in try body(b.baseAddress!) }
    }
    return try result.get()
}

private func withMutableBytes<T, R>(_ array: inout [T], _ body: (UnsafeMutableRawPointer) throws(PruneKitError) -> R) throws(PruneKitError) -> R {
    let result: Result<R, PruneKitError> = array.withUnsafeMutableBytes { b in
        Result { () throws(PruneKitError) -> R in try body(b.baseAddress!) }
    }
    return try result.get()
}
