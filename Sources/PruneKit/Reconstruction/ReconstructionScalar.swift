import COpenBLAS
import CPruneKitShims

/// The arithmetic precision of reconstruction. Raw values are pinned to `enum pk_precision`.
public enum Precision: Int32, Sendable {
    case float32 = 0
    case float64 = 1
}

/// float32 or float64 with the BLAS and LAPACK calls reconstruction needs. Matrices are
/// row-major; a symmetric matrix is its own transpose, so LAPACK's column-major routines apply
/// directly, and a column-major lower factor L (A = L L^T) reads row-major as the upper factor
/// U = L^T (A = U^T U).
protocol ReconstructionScalar: BinaryFloatingPoint, Sendable, OrderKeyed {
    init(_ value: Double)
    var double: Double { get }
    /// C = alpha * A * B + beta * C, row-major, A m x k, B k x n.
    static func gemm(m: Int, n: Int, k: Int, alpha: Self, a: UnsafePointer<Self>, lda: Int,
                     b: UnsafePointer<Self>, ldb: Int, beta: Self, c: UnsafeMutablePointer<Self>, ldc: Int)
    /// LAPACK's ?potrf, ?potri (a factor's uplo, n, a, lda, info), ?trtri and ?potrs for Self.
    typealias Factorization = (UnsafePointer<CChar>?, UnsafePointer<Int32>?, UnsafeMutablePointer<Self>?,
                               UnsafePointer<Int32>?, UnsafeMutablePointer<Int32>?) -> Void
    static var potrf: Factorization { get }
    static var potri: Factorization { get }
    typealias TriangularInverse = (UnsafePointer<CChar>?, UnsafePointer<CChar>?, UnsafePointer<Int32>?,
                                   UnsafeMutablePointer<Self>?, UnsafePointer<Int32>?, UnsafeMutablePointer<Int32>?) -> Void
    typealias FactorSolve = (UnsafePointer<CChar>?, UnsafePointer<Int32>?, UnsafePointer<Int32>?, UnsafePointer<Self>?,
                             UnsafePointer<Int32>?, UnsafeMutablePointer<Self>?, UnsafePointer<Int32>?,
                             UnsafeMutablePointer<Int32>?) -> Void
    static var trtri: TriangularInverse { get }
    static var potrs: FactorSolve { get }
    /// Whether none of `count` values is infinite or NaN: an OR of exponent flags, which
    /// vectorizes (a loop that stops at the first bad value does not).
    static func allFinite(_ values: UnsafePointer<Self>, count: Int) -> Bool
    /// SparseGPT's in-block updates of one row by the AVX2 kernel (`prunekit_wide_obs_*`), the
    /// same arithmetic as the baseline loop. Only when `wideKernels`.
    static func wideUpdates(_ row: UnsafeMutablePointer<Self>, _ list: UnsafePointer<Int32>, _ listed: Int,
                            _ diagonal: UnsafePointer<Self>, _ inverse: UnsafePointer<Self>, _ start: Int, _ end: Int, _ count: Int)
    /// Loads elements `start ..< start + count` of a view's row converted to Self.
    static func load(_ view: MatrixView, row: Int, from start: Int, count: Int, into: UnsafeMutablePointer<Self>,
                     scratch: UnsafeMutablePointer<Double>)
}

private let lower: CChar = 76  // "L"
private let upper: CChar = 85  // "U"

extension ReconstructionScalar {
    /// In place: the upper factor U with A = U^T U in the upper triangle (row-major). Returns
    /// LAPACK's info (0 = success, > 0 = not positive definite).
    static func choleskyUpper(_ a: UnsafeMutablePointer<Self>, n: Int) -> Int32 {
        var uplo = lower, size = Int32(n), lda = Int32(n), info: Int32 = 0
        potrf(&uplo, &size, a, &lda, &info)
        return info
    }
    /// In place: the lower factor L with A = L L^T in the lower triangle (row-major; the upper
    /// triangle is left as it was). Returns LAPACK's info.
    static func choleskyLower(_ a: UnsafeMutablePointer<Self>, n: Int) -> Int32 {
        var uplo = upper, size = Int32(n), lda = Int32(n), info: Int32 = 0
        potrf(&uplo, &size, a, &lda, &info)
        return info
    }
    /// After `choleskyUpper`: U^{-1} in place (the inverse of the upper factor, upper).
    static func invertUpperFactor(_ a: UnsafeMutablePointer<Self>, n: Int) -> Int32 {
        var uplo = lower, diag: CChar = 78, size = Int32(n), lda = Int32(n), info: Int32 = 0  // "N": non-unit
        trtri(&uplo, &diag, &size, a, &lda, &info)
        return info
    }
    /// After `choleskyUpper` of A (n x n): A^{-1} in place, both triangles (symmetric).
    static func inverseFromCholesky(_ a: UnsafeMutablePointer<Self>, n: Int) -> Int32 {
        var uplo = lower, size = Int32(n), lda = Int32(n), info: Int32 = 0
        potri(&uplo, &size, a, &lda, &info)
        // LAPACK filled the column-major lower triangle = the row-major upper one: mirror it.
        for i in 0..<n { for j in 0..<i { a[i * n + j] = a[j * n + i] } }
        return info
    }
    /// After `choleskyUpper` of A (n x n): B (rows x n, row-major) := B * A^{-1}.
    static func solveRight(_ a: UnsafePointer<Self>, n: Int, b: UnsafeMutablePointer<Self>, rows: Int) -> Int32 {
        var uplo = lower, size = Int32(n), nrhs = Int32(rows), lda = Int32(n), ldb = Int32(n), info: Int32 = 0
        potrs(&uplo, &size, &nrhs, a, &lda, b, &ldb, &info)
        return info
    }
}

extension Double: ReconstructionScalar {
    static func wideUpdates(_ row: UnsafeMutablePointer<Double>, _ list: UnsafePointer<Int32>, _ listed: Int,
                            _ diagonal: UnsafePointer<Double>, _ inverse: UnsafePointer<Double>, _ start: Int, _ end: Int, _ count: Int) {
        prunekit_wide_obs_double(row, list, listed, diagonal, inverse, start, end, count)
    }
    var double: Double { self }
    static func allFinite(_ values: UnsafePointer<Double>, count: Int) -> Bool {
        // (exponent bits) + (lowest exponent bit) carries into bit 63 iff the exponent is all ones.
        let bits = UnsafeRawPointer(values)
        var flags: UInt64 = 0
        for i in 0..<count {
            flags |= (bits.load(fromByteOffset: 8 * i, as: UInt64.self) & 0x7FF0_0000_0000_0000) &+ 0x0010_0000_0000_0000
        }
        return flags & 0x8000_0000_0000_0000 == 0
    }
    static func gemm(m: Int, n: Int, k: Int, alpha: Double, a: UnsafePointer<Double>, lda: Int,
                     b: UnsafePointer<Double>, ldb: Int, beta: Double, c: UnsafeMutablePointer<Double>, ldc: Int) {
        cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Int32(m), Int32(n), Int32(k), alpha, a, Int32(lda),
                    b, Int32(ldb), beta, c, Int32(ldc))
    }
    static var potrf: Factorization { dpotrf_ }
    static var potri: Factorization { dpotri_ }
    static var trtri: TriangularInverse { dtrtri_ }
    static var potrs: FactorSolve { dpotrs_ }
    static func load(_ view: MatrixView, row: Int, from start: Int = 0, count: Int, into: UnsafeMutablePointer<Double>,
                     scratch: UnsafeMutablePointer<Double>) {
        let source = view.doubles(row: row, from: start, count: count, scratch: into)
        if source != UnsafePointer(into) { into.update(from: source, count: count) }
    }
}

extension Float: ReconstructionScalar {
    static func wideUpdates(_ row: UnsafeMutablePointer<Float>, _ list: UnsafePointer<Int32>, _ listed: Int,
                            _ diagonal: UnsafePointer<Float>, _ inverse: UnsafePointer<Float>, _ start: Int, _ end: Int, _ count: Int) {
        prunekit_wide_obs_float(row, list, listed, diagonal, inverse, start, end, count)
    }
    var double: Double { Double(self) }
    static func allFinite(_ values: UnsafePointer<Float>, count: Int) -> Bool {
        let bits = UnsafeRawPointer(values)
        var flags: UInt32 = 0
        for i in 0..<count { flags |= nonFiniteFlag(bits.load(fromByteOffset: 4 * i, as: UInt32.self)) }
        return flags & 0x8000_0000 == 0
    }
    static func gemm(m: Int, n: Int, k: Int, alpha: Float, a: UnsafePointer<Float>, lda: Int,
                     b: UnsafePointer<Float>, ldb: Int, beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int) {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Int32(m), Int32(n), Int32(k), alpha, a, Int32(lda),
                    b, Int32(ldb), beta, c, Int32(ldc))
    }
    static var potrf: Factorization { spotrf_ }
    static var potri: Factorization { spotri_ }
    static var trtri: TriangularInverse { strtri_ }
    static var potrs: FactorSolve { spotrs_ }
    static func load(_ view: MatrixView, row: Int, from start: Int = 0, count: Int, into: UnsafeMutablePointer<Float>,
                     scratch: UnsafeMutablePointer<Double>) {
        if view.dtype == .float64 {
            let d = view.doubles(row: row, from: start, count: count, scratch: scratch)
            for j in 0..<count { into[j] = Float(d[j]) }
        } else {  // float32 as it is; the 16-bit types convert exactly
            let f = view.floats(row: row, from: start, count: count, scratch: into)
            if f != UnsafePointer(into) { into.update(from: f, count: count) }
        }
    }
}
