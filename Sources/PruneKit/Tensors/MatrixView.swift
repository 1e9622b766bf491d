/// A 2-D row-major view of memory someone else owns: `rows` x `cols` elements of `dtype`,
/// consecutive rows `rowStride` elements apart. Rows are output features and columns input
/// features (PyTorch's Linear layout).
///
/// Creating a view checks its shape and alignment; it does not copy. Functions that only read
/// a view never write through it. The memory must stay valid, and must not be written by
/// anyone else, while a function that received the view runs.
///
/// The zero-copy layer is for this package's C layer and tests (`package`): Swift callers hand
/// PruneKit owned matrices (`Matrix`, `MatrixRepresentable`). The type itself is public only
/// because `MatrixRepresentable.withMatrixView` names it; outside the package it is opaque (no
/// initializer, no members), so only PruneKit makes and reads views.
public struct MatrixView: @unchecked Sendable {
    package let base: UnsafeMutableRawPointer
    package let dtype: DType
    package let rows: Int
    package let cols: Int
    package let rowStride: Int

    /// - Parameters:
    ///   - base: The first element, aligned to the element size.
    ///   - name: How error messages call this matrix ("weights", "gradient", ...).
    /// - Throws: `PruneKitError` with `.invalidShape` for non-positive sizes, a stride below
    ///   `cols`, or a size that overflows; `.invalidArgument` for a misaligned base.
    package init(
        base: UnsafeMutableRawPointer, dtype: DType, rows: Int, cols: Int, rowStride: Int,
        name: String = "matrix"
    ) throws(PruneKitError) {
        guard rows > 0, cols > 0 else {
            throw .invalidShape("\(name) must have positive rows and cols, got \(rows) x \(cols)")
        }
        guard rowStride >= cols else {
            throw .invalidShape("\(name) row_stride \(rowStride) is smaller than cols \(cols)")
        }
        let span = try checkedProduct(rows - 1, rowStride, "\(name) extent")
        let (elements, overflow) = span.addingReportingOverflow(cols)
        guard !overflow, elements.multipliedReportingOverflow(by: dtype.size).overflow == false,
              rows.multipliedReportingOverflow(by: cols).overflow == false
        else { throw .invalidShape("\(name) of \(rows) x \(cols) (stride \(rowStride)) is too large") }
        guard Int(bitPattern: base) % dtype.size == 0 else {
            throw .invalidArgument("\(name) data pointer is not aligned to \(dtype.size) bytes")
        }
        self.base = base
        self.dtype = dtype
        self.rows = rows
        self.cols = cols
        self.rowStride = rowStride
    }

    /// rows * cols.
    package var count: Int { rows * cols }

    @inline(__always)
    func rowAddress(_ row: Int) -> UnsafeMutableRawPointer {
        base + row * rowStride * dtype.size
    }

    /// Columns `start ..< start + count` of `row` as float32: a pointer straight into the view
    /// for float32 data, else the values converted into `scratch` (round to nearest for
    /// float64; exact for the 16-bit types).
    @inline(__always)
    func floats(row: Int, from start: Int = 0, count: Int, scratch: UnsafeMutablePointer<Float>) -> UnsafePointer<Float> {
        let address = rowAddress(row)
        switch dtype {
        case .float32:
            return UnsafePointer(address.assumingMemoryBound(to: Float.self) + start)
        case .float64:
            let source = address.assumingMemoryBound(to: Double.self) + start
            for j in 0..<count { scratch[j] = Float(source[j]) }
        case .float16:
            let source = address.assumingMemoryBound(to: UInt16.self) + start
            for j in 0..<count { scratch[j] = floatFromHalfBits(source[j]) }
        case .bfloat16:
            let source = address.assumingMemoryBound(to: UInt16.self) + start
            for j in 0..<count { scratch[j] = floatFromBFloat16Bits(source[j]) }
        }
        return UnsafePointer(scratch)
    }

    /// Columns `start ..< start + count` of `row` as float64 (exact for every dtype).
    @inline(__always)
    func doubles(row: Int, from start: Int = 0, count: Int, scratch: UnsafeMutablePointer<Double>) -> UnsafePointer<Double> {
        let address = rowAddress(row)
        switch dtype {
        case .float64:
            return UnsafePointer(address.assumingMemoryBound(to: Double.self) + start)
        case .float32:
            let source = address.assumingMemoryBound(to: Float.self) + start
            for j in 0..<count { scratch[j] = Double(source[j]) }
        case .float16:
            let source = address.assumingMemoryBound(to: UInt16.self) + start
            for j in 0..<count { scratch[j] = Double(floatFromHalfBits(source[j])) }
        case .bfloat16:
            let source = address.assumingMemoryBound(to: UInt16.self) + start
            for j in 0..<count { scratch[j] = Double(floatFromBFloat16Bits(source[j])) }
        }
        return UnsafePointer(scratch)
    }

    /// The element at (row, col) as float64, for messages.
    func value(row: Int, col: Int) -> Double {
        var one = 0.0
        return withUnsafeMutablePointer(to: &one) { doubles(row: row, from: col, count: 1, scratch: $0)[0] }
    }
}

/// A matrix that owns its elements: the safe way to hand PruneKit data from Swift.
public struct Matrix<Scalar: PruneKitScalar>: Sendable {
    public let rows: Int
    public let cols: Int
    /// Row-major, `rows * cols` elements.
    public var values: [Scalar]

    /// - Throws: `.invalidShape` if `values.count != rows * cols` or a size is not positive.
    public init(rows: Int, cols: Int, values: [Scalar]) throws(PruneKitError) {
        guard rows > 0, cols > 0 else {
            throw .invalidShape("a matrix must have positive rows and cols, got \(rows) x \(cols)")
        }
        guard rows.multipliedReportingOverflow(by: cols) == (values.count, false) else {
            throw .invalidShape("\(values.count) values do not fill \(rows) x \(cols)")
        }
        self.rows = rows
        self.cols = cols
        self.values = values
    }

    /// A matrix of float32 values converted to `Scalar`.
    public init(rows: Int, cols: Int, floats: [Float]) throws(PruneKitError) {
        try self.init(rows: rows, cols: cols, values: floats.map(Scalar.init))
    }

    public subscript(row: Int, col: Int) -> Scalar {
        get { values[row * cols + col] }
        set { values[row * cols + col] = newValue }
    }
}

extension Matrix: Equatable where Scalar: Equatable {}

/// Anything that can lend PruneKit a view of its elements for the duration of a call.
public protocol MatrixRepresentable: Sendable {
    var rows: Int { get }
    var cols: Int { get }
    func withMatrixView<R>(_ body: (MatrixView) throws(PruneKitError) -> R) throws(PruneKitError) -> R
}

extension Matrix: MatrixRepresentable {
    public func withMatrixView<R>(_ body: (MatrixView) throws(PruneKitError) -> R) throws(PruneKitError) -> R {
        let result: Result<R, PruneKitError> = values.withUnsafeBytes { bytes in
            Result { () throws(PruneKitError) -> R in
                let view = try MatrixView(
                    base: UnsafeMutableRawPointer(mutating: bytes.baseAddress!), dtype: Scalar.dtype,
                    rows: rows, cols: cols, rowStride: cols)
                return try body(view)
            }
        }
        return try result.get()
    }

    /// Lends a writable view of the elements.
    mutating func withMutableMatrixView<R>(_ body: (MatrixView) throws(PruneKitError) -> R) throws(PruneKitError) -> R {
        let (rows, cols) = (self.rows, self.cols)
        let result: Result<R, PruneKitError> = values.withUnsafeMutableBytes { bytes in
            Result { () throws(PruneKitError) -> R in
                let view = try MatrixView(
                    base: bytes.baseAddress!, dtype: Scalar.dtype, rows: rows, cols: cols, rowStride: cols)
                return try body(view)
            }
        }
        return try result.get()
    }
}

/// Lends views of every matrix at once, in order, to `body`.
func withMatrixViews<R>(_ matrices: [any MatrixRepresentable], _ done: [MatrixView] = [],
                        _ body: ([MatrixView]) throws(PruneKitError) -> R) throws(PruneKitError) -> R {
    guard done.count < matrices.count else { return try body(done) }
    return try matrices[done.count].withMatrixView { view throws(PruneKitError) in
        try withMatrixViews(matrices, done + [view], body)
    }
}

/// Lends writable views of every matrix at once, in order, to `body`.
func withMutableMatrixViews<S, R>(_ matrices: inout [Matrix<S>],
                                  _ body: ([MatrixView]) throws(PruneKitError) -> R) throws(PruneKitError) -> R {
    func lend(_ buffer: UnsafeMutableBufferPointer<Matrix<S>>, _ done: [MatrixView]) throws(PruneKitError) -> R {
        guard done.count < buffer.count else { return try body(done) }
        return try buffer[done.count].withMutableMatrixView { view throws(PruneKitError) in try lend(buffer, done + [view]) }
    }
    return try matrices.withUnsafeMutableBufferPointer { buffer throws(PruneKitError) in try lend(buffer, []) }
}
