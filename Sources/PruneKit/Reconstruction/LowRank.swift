import COpenBLAS

/// Activation-aware low rank (the factorisation behind CSKV's channel shrinking and the low-rank
/// half of sparse + low-rank methods): W (rows x cols) ~ A B with A rows x r and B r x cols,
/// minimising ||(W - A B) X^T||_F over the calibration inputs X, i.e. tr((W - AB) H (W - AB)^T)
/// with H = X^T X.
///
/// With the lower Cholesky factor H = L L^T the error is ||(W - AB) L||_F, so the optimum is the
/// truncated SVD of W L = U S V^T (Eckart-Young): A = U_r, B = S_r V_r^T L^{-1}. The squared
/// error is the sum of the dropped s_i^2. Every column of A has unit norm and its largest-magnitude
/// entry (the first on ties) positive, which fixes the SVD's signs.
public struct LowRankOptions: Sendable, Equatable {
    /// The rank r, 1 ... min(rows, cols); 0 = chosen by `energy`.
    public var rank: Int
    /// With rank 0: the smallest r whose s_1^2 + ... + s_r^2 reaches this fraction, in (0, 1], of
    /// the sum of all s_i^2 (the share of ||W X^T||^2 kept); at least 1.
    public var energy: Double
    /// Added to the Hessian's diagonal as a fraction of its mean (inputs that never fire get 1
    /// first), as in reconstruction; a singular H needs some.
    public var dampening: Double
    /// Not positive definite: retry with 10x the dampening this many times, then `.numeric`.
    public var maxDampeningRetries: Int
    /// Threads for copying the Hessian, 0 = one per CPU. Results do not depend on it.
    public var threads: Int

    public init(rank: Int = 0, energy: Double = 0, dampening: Double = 0.01, maxDampeningRetries: Int = 4, threads: Int = 0) {
        self.rank = rank
        self.energy = energy
        self.dampening = dampening
        self.maxDampeningRetries = maxDampeningRetries
        self.threads = threads
    }

    func validate(rows: Int, cols: Int) throws(PruneKitError) {
        let limit = min(rows, cols)
        if rank != 0 {
            guard rank > 0, rank <= limit else {
                throw .invalidArgument("rank must be in 1 ... min(rows, cols) = \(limit), got \(rank)")
            }
            guard energy == 0 else { throw .invalidArgument("give a rank or an energy fraction, not both (rank \(rank), energy \(energy))") }
        } else {
            guard energy > 0, energy <= 1 else {
                throw .invalidArgument("rank 0 chooses the rank by energy, which must be in (0, 1], got \(energy)")
            }
        }
        guard dampening >= 0, dampening.isFinite else { throw .invalidArgument("dampening must be finite and >= 0, got \(dampening)") }
        guard maxDampeningRetries >= 0 else { throw .invalidArgument("max dampening retries must be >= 0") }
        try checkThreads(threads)
    }
}

/// The activation-aware rank-r factors of one layer. Writes the first r columns of `a`
/// (rows x capacity, capacity >= r) and the first r rows of `b` (capacity x cols) in their own
/// dtypes, and `singularValues` (min(rows, cols) doubles, the s_i of W L, descending) if given,
/// only on success; the rest of the buffers is left as it was. Arithmetic in float64.
/// The C function is `pk_low_rank`.
/// - Returns: r.
/// - Throws: `.invalidShape`, `.invalidArgument`, `.nonFinite`, `.bufferTooSmall` (a or b
///   cannot hold r), `.numeric` (H not positive definite after the retries, or LAPACK failed).
@discardableResult
package func lowRank(weights: MatrixView, hessian: UnsafePointer<Double>, hessianSize: Int, options: LowRankOptions,
                    a: MatrixView, b: MatrixView, singularValues: UnsafeMutablePointer<Double>?) throws(PruneKitError) -> Int {
    try checkReconstructionInputs(weights: weights, hessian: hessian, hessianSize: hessianSize, output: weights,
                                  threads: options.threads)
    try options.validate(rows: weights.rows, cols: weights.cols)
    guard a.rows == weights.rows else { throw .invalidShape("a has \(a.rows) rows, the weights \(weights.rows)") }
    guard b.cols == weights.cols else { throw .invalidShape("b has \(b.cols) columns, the weights \(weights.cols)") }
    if options.rank > 0 {  // known before any work
        try checkCapacity(rank: options.rank, a: a, b: b)
    }
    let f = try LowRankFactors(weights: weights, hessian: hessian, options: options)
    defer { keepAlive(f) }
    try checkCapacity(rank: f.rank, a: a, b: b)
    let r = f.rank
    try OBS<Double>.storeRows(f.a.base, rows: weights.rows, cols: r,
                              into: try MatrixView(base: a.base, dtype: a.dtype, rows: a.rows, cols: r, rowStride: a.rowStride, name: "a"),
                              threads: options.threads)
    try OBS<Double>.storeRows(f.b.base, rows: r, cols: weights.cols,
                              into: try MatrixView(base: b.base, dtype: b.dtype, rows: r, cols: b.cols, rowStride: b.rowStride, name: "b"),
                              threads: options.threads)
    if let singularValues {
        // The factorisation ran on H scaled by a power of 2 (HessianScale): A and B do not
        // depend on it, the singular values of W L do, by its square root.
        let scale = HessianScale(hessian, n: weights.cols)
        let undo = 1 / (scale.first.squareRoot() * scale.second.squareRoot())
        for i in 0..<f.s.count { singularValues[i] = f.s.base[i] * undo }
    }
    return r
}

private func checkCapacity(rank: Int, a: MatrixView, b: MatrixView) throws(PruneKitError) {
    guard a.cols >= rank else { throw PruneKitError(.bufferTooSmall, "a has \(a.cols) columns, rank \(rank) needs \(rank)") }
    guard b.rows >= rank else { throw PruneKitError(.bufferTooSmall, "b has \(b.rows) rows, rank \(rank) needs \(rank)") }
}

/// The factors in float64 scratch: a (rows x rank), b (rank x cols), s (min(rows, cols)).
final class LowRankFactors {
    let rank: Int
    let a: ScratchBuffer<Double>
    let b: ScratchBuffer<Double>
    let s: ScratchBuffer<Double>

    init(weights: MatrixView, hessian: UnsafePointer<Double>, options: LowRankOptions) throws(PruneKitError) {
        let rows = weights.rows, n = weights.cols, k = min(rows, n)
        // L, lower, row-major: the shared dampened factorisation, then the upper triangle (the
        // Hessian copy it leaves there) cleared so L is a plain dense operand.
        let l = try ScratchBuffer<Double>(count: n * n)
        let reconstruction = ReconstructionOptions(dampening: options.dampening, maxDampeningRetries: options.maxDampeningRetries,
                                                   precision: .float64, threads: options.threads)
        try Factor<Double>.dampenedCholesky(hessian, n: n, order: Array(0..<n), options: reconstruction, lowerFactor: true,
                                            into: l.base, after: { _, _ in 0 })
        for i in 0..<n { for j in (i + 1)..<max(i + 1, n) { l.base[i * n + j] = 0 } }
        let w = try ScratchBuffer<Double>(count: rows * n), scratch = try ScratchBuffer<Double>(count: n)
        for r in 0..<rows { Double.load(weights, row: r, from: 0, count: n, into: w.base + r * n, scratch: scratch.base) }
        let m = try ScratchBuffer<Double>(count: rows * n)
        Double.gemm(m: rows, n: n, k: n, alpha: 1, a: w.base, lda: n, b: l.base, ldb: n, beta: 0, c: m.base, ldc: n)
        // Row-major W L is column-major (W L)^T = V S U^T: LAPACK's u is V^T row-major (k x n)
        // and its vt is U row-major (rows x k).
        let s = try ScratchBuffer<Double>(count: k), vt = try ScratchBuffer<Double>(count: k * n)
        let u = try ScratchBuffer<Double>(count: rows * k), iwork = try ScratchBuffer<Int32>(count: 8 * k)
        var jobz: CChar = 83  // "S": the first k singular vectors
        var mm = Int32(n), nn = Int32(rows), lda = Int32(n), ldu = Int32(n), ldvt = Int32(k), lwork: Int32 = -1, info: Int32 = 0
        var query = 0.0
        dgesdd_(&jobz, &mm, &nn, m.base, &lda, s.base, vt.base, &ldu, u.base, &ldvt, &query, &lwork, iwork.base, &info)
        guard info == 0, query.isFinite, query >= 1, query < Double(Int32.max) else {
            throw PruneKitError(.numeric, "LAPACK dgesdd's workspace query failed (info \(info))")
        }
        lwork = Int32(query)
        let work = try ScratchBuffer<Double>(count: Int(lwork))
        dgesdd_(&jobz, &mm, &nn, m.base, &lda, s.base, vt.base, &ldu, u.base, &ldvt, work.base, &lwork, iwork.base, &info)
        guard info == 0 else { throw PruneKitError(.numeric, "LAPACK dgesdd did not converge (info \(info))") }
        keepAlive(w, scratch, m, iwork, work)

        var r = options.rank
        if r == 0 {
            var total = 0.0
            for i in 0..<k { total += s.base[i] * s.base[i] }
            var kept = 0.0
            r = k
            for i in 0..<k {
                kept += s.base[i] * s.base[i]
                if kept >= options.energy * total { r = i + 1; break }
            }
        }
        let a = try ScratchBuffer<Double>(count: rows * r), b = try ScratchBuffer<Double>(count: r * n)
        for j in 0..<r {
            var best = 0, largest = -1.0
            for i in 0..<rows where abs(u.base[i * k + j]) > largest { largest = abs(u.base[i * k + j]); best = i }
            let sign: Double = u.base[best * k + j] < 0 ? -1 : 1
            for i in 0..<rows { a.base[i * r + j] = sign * u.base[i * k + j] }
            for c in 0..<n { b.base[j * n + c] = sign * s.base[j] * vt.base[j * n + c] }
        }
        // B := (S_r V_r^T) L^{-1}.
        cblas_dtrsm(CblasRowMajor, CblasRight, CblasLower, CblasNoTrans, CblasNonUnit, Int32(r), Int32(n), 1, l.base, Int32(n),
                    b.base, Int32(n))
        keepAlive(l, u, vt)
        guard Double.allFinite(a.base, count: rows * r), Double.allFinite(b.base, count: r * n) else {
            throw PruneKitError(.numeric, "the low-rank factors are not finite (an ill-conditioned hessian: raise the dampening)")
        }
        self.rank = r
        self.a = a
        self.b = b
        self.s = s
    }
}

/// The activation-aware factors of an owned matrix: A (rows x r), B (r x cols) in its scalar
/// type, and the singular values of W L.
///
///     var stats = try ActivationStatistics(features: cols, gram: true)
///     try stats.accumulate(batch)
///     let (a, b, s) = try lowRank(w, hessian: stats.gram(), options: .init(energy: 0.95))
public func lowRank<S>(_ weights: Matrix<S>, hessian: [Double], options: LowRankOptions) throws(PruneKitError)
    -> (a: Matrix<S>, b: Matrix<S>, singularValues: [Double]) {
    let k = min(weights.rows, weights.cols)
    var a = try Matrix<S>(rows: weights.rows, cols: k, values: .init(repeating: S(0), count: weights.rows * k))
    var b = try Matrix<S>(rows: k, cols: weights.cols, values: .init(repeating: S(0), count: k * weights.cols))
    var s = [Double](repeating: 0, count: k)
    let r = try withHessian(hessian, cols: weights.cols) { h throws(PruneKitError) in
        try s.withUnsafeMutableBufferPointer { sv throws(PruneKitError) in
            try weights.withMatrixView { view throws(PruneKitError) in
                try a.withMutableMatrixView { av throws(PruneKitError) in
                    try b.withMutableMatrixView { bv throws(PruneKitError) in
                        try lowRank(weights: view, hessian: h, hessianSize: weights.cols, options: options, a: av, b: bv,
                                    singularValues: sv.baseAddress)
                    }
                }
            }
        }
    }
    let aValues = (0..<(weights.rows * r)).map { a.values[($0 / r) * k + $0 % r] }
    return (try Matrix(rows: weights.rows, cols: r, values: aValues),
            try Matrix(rows: r, cols: weights.cols, values: Array(b.values[0..<(r * weights.cols)])), s)
}
