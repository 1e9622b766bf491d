/// ADMM pruning with weight updates (Boža 2024, "Fast and Optimal Weight Update for Pruned Large
/// Language Models"; the splitting of ALPS, Meng et al. 2024): minimise ||(W - W') X||^2 over W'
/// with the sparsity pattern, by alternating a least-squares step on the weights with a
/// projection onto the pattern, the mask re-chosen during a cubic sparsity ramp and then frozen,
/// and a final conjugate-gradient solve for the kept weights on the frozen support.
///
/// Everything runs on the normalised problem: with d_j = sqrt(H_jj), Hn = D^-1 H D^-1 (unit
/// diagonal) and Wn = W D, so the projection's |Wn + U| is Wanda's |w| * ||x|| and the result does
/// not depend on the Hessian's scale. Dampening adds `dampening` to Hn's diagonal (its mean is 1).
public struct ADMMOptions: Sendable, Equatable {
    /// What the projection keeps.
    public enum Pattern: Sendable, Equatable {
        /// The whole layer competes: exactly floor(s * rows * cols) pruned (ties by row-major position).
        case layer(sparsity: Double)
        /// Each row's inputs compete: floor(s * cols) pruned per row (ties by column).
        case row(sparsity: Double)
        /// n of every m consecutive inputs kept per row (ties by position in the group).
        case nm(n: Int, m: Int)

        /// The fraction of entries pruned at the end of the ramp.
        var sparsity: Double {
            switch self {
            case .layer(let s), .row(let s): return s
            case .nm(let n, let m): return Double(m - n) / Double(m)
            }
        }
    }

    public var pattern: Pattern
    /// ADMM iterations (default 30); each costs one rows x cols x cols GEMM.
    public var iterations: Int
    /// The first `rampIterations` (default 20) re-choose the mask from |W + U| at the sparsity
    /// s - s (1 - (t + 1) / ramp)^3 of iteration t (cubic, reaching s at t = ramp - 1); then it
    /// is frozen. 0: the mask is chosen once, from the weights, before the first iteration.
    public var rampIterations: Int
    /// The penalty ρ of the splitting (default 1, on the unit-diagonal Hessian).
    public var rho: Double
    /// ρ is multiplied by `rhoGrowth` after every `rhoInterval` iterations (default 1: fixed).
    /// Each change refactors (Hn + ρ I).
    public var rhoGrowth: Double
    public var rhoInterval: Int
    /// Conjugate-gradient steps on the frozen support at the end (default 10; 0 = none), each one
    /// GEMM: the kept weights move towards the least-squares optimum for the mask.
    public var refineIterations: Int
    /// Added to the normalised Hessian's diagonal (default 0.1, the reference's).
    public var dampening: Double
    public var precision: Precision
    /// Worker threads for the per-row work, 0 = one per CPU. OpenBLAS uses its own threads.
    public var threads: Int

    public init(pattern: Pattern = .layer(sparsity: 0.5), iterations: Int = 30, rampIterations: Int = 20, rho: Double = 1,
                rhoGrowth: Double = 1, rhoInterval: Int = 1, refineIterations: Int = 10, dampening: Double = 0.1,
                precision: Precision = .float32, threads: Int = 0) {
        self.pattern = pattern
        self.iterations = iterations
        self.rampIterations = rampIterations
        self.rho = rho
        self.rhoGrowth = rhoGrowth
        self.rhoInterval = rhoInterval
        self.refineIterations = refineIterations
        self.dampening = dampening
        self.precision = precision
        self.threads = threads
    }

    func validate(cols: Int, maskGiven: Bool) throws(PruneKitError) {
        guard iterations >= 0, iterations <= 100_000 else { throw .invalidArgument("iterations must be in [0, 100000], got \(iterations)") }
        guard rampIterations >= 0, rampIterations <= iterations || maskGiven else {
            throw .invalidArgument("ramp iterations must be in [0, iterations = \(iterations)], got \(rampIterations)")
        }
        guard rho > 0, rho.isFinite, rho <= 1e12 else { throw .invalidArgument("rho must be in (0, 1e12], got \(rho)") }
        guard rhoGrowth >= 1, rhoGrowth <= 100 else { throw .invalidArgument("rho growth must be in [1, 100], got \(rhoGrowth)") }
        guard rhoInterval > 0 else { throw .invalidArgument("rho interval must be positive, got \(rhoInterval)") }
        guard refineIterations >= 0, refineIterations <= 100_000 else {
            throw .invalidArgument("refine iterations must be in [0, 100000], got \(refineIterations)")
        }
        guard dampening >= 0, dampening.isFinite, dampening <= 1e6 else {
            throw .invalidArgument("dampening must be finite and in [0, 1e6], got \(dampening)")
        }
        try checkThreads(threads)
        if maskGiven { return }
        switch pattern {
        case .layer(let s), .row(let s):
            try checkSparsity(s)
        case .nm(let n, let m):
            try checkNM(n, m, cols: cols)
        }
    }

    /// The sparsity the ramp asks for at iteration t (t < rampIterations), in IEEE double:
    /// s - s * (1 - (t + 1) / ramp)^3.
    public func rampSparsity(iteration t: Int) -> Double {
        let s = pattern.sparsity
        guard rampIterations > 0 else { return s }
        let left = 1 - Double(t + 1) / Double(rampIterations)
        return s - s * (left * left * left)
    }
}

/// ADMM on one layer. Chooses the mask (or takes `givenMask`, 1 = keep) and writes it to `maskOut`
/// and the updated weights to `output` only on success; `output` may be the weights' own memory
/// and may have another dtype. The C function is `pk_admm`.
package func admm(weights: MatrixView, hessian: UnsafePointer<Double>, hessianSize: Int, givenMask: UnsafePointer<UInt8>?,
                 options: ADMMOptions, maskOut: UnsafeMutablePointer<UInt8>?, output: MatrixView) throws(PruneKitError) {
    try checkReconstructionInputs(weights: weights, hessian: hessian, hessianSize: hessianSize, output: output,
                                  threads: options.threads)
    try options.validate(cols: weights.cols, maskGiven: givenMask != nil)
    if let givenMask { try checkMaskBytes(givenMask, count: weights.rows * weights.cols) }
    switch options.precision {
    case .float32: try ADMMSolver<Float>.run(weights, hessian, options, givenMask, maskOut, output)
    case .float64: try ADMMSolver<Double>.run(weights, hessian, options, givenMask, maskOut, output)
    }
}

enum ADMMSolver<T: ReconstructionScalar> {
    static func run(_ weights: MatrixView, _ hessian: UnsafePointer<Double>, _ options: ADMMOptions,
                    _ givenMask: UnsafePointer<UInt8>?, _ maskOut: UnsafeMutablePointer<UInt8>?,
                    _ output: MatrixView) throws(PruneKitError) {
        let rows = weights.rows, cols = weights.cols
        let total = try checkedProduct(rows, cols, "weights")
        let square = try checkedProduct(cols, cols, "hessian")
        let workers = resolveThreads(options.threads, work: rows)
        // Working set: the normalised weights' target XY = Wn Hd, the iterate W, the dual U, a
        // work matrix (W + U, then the right-hand side, then CG directions), the CG residual, the
        // damped Hessian and the inverse of Hd + ρ I; masks as bytes (1 = pruned) and keys.
        let target = try ScratchBuffer<T>(count: total)
        let w = try ScratchBuffer<T>(count: total)
        let u = try ScratchBuffer<T>(count: total)
        let work = try ScratchBuffer<T>(count: total)
        let hd = try ScratchBuffer<T>(count: square)
        let inverse = try ScratchBuffer<T>(count: square)
        let pruned = try ScratchBuffer<UInt8>(count: total)
        let keys = try ScratchBuffer<UInt64>(count: total)
        let scale = try ScratchBuffer<Double>(count: cols)
        let ones = try ScratchBuffer<T>(count: cols)
        let convert = try ScratchBuffer<Double>(count: workers * cols)
        // The CG products, and the N:M ramp's ranking copy, only where they are used.
        let product = try ScratchBuffer<T>(count: options.refineIterations > 0 ? total : 1)
        var rampsNM = false
        if case .nm = options.pattern, options.rampIterations > 1, givenMask == nil { rampsNM = true }
        let ranking = rampsNM ? try ScratchBuffer<T>(count: total) : nil
        defer { keepAlive(target, w, u, work, hd, inverse, pruned, keys, scale, ones, convert, product, ranking) }

        // d_j = sqrt(H_jj); inputs that never fire get d = 1, a unit diagonal and zero weights.
        var dead: [Int] = []
        for j in 0..<cols {
            let d = hessian[j * cols + j]
            if d == 0 { dead.append(j) }
            scale.base[j] = d == 0 ? 1 : d.squareRoot()
            ones.base[j] = 1
        }
        let s = scale.base
        parallelFor(workers: workers) { worker in
            for i in partition(cols, workers: workers, worker: worker) {
                let source = hessian + i * cols, row = hd.base + i * cols
                for j in 0..<cols { row[j] = T(source[j] / s[i] / s[j]) }
            }
        }
        for j in dead {
            for i in 0..<cols { hd.base[j * cols + i] = 0; hd.base[i * cols + j] = 0 }
            hd.base[j * cols + j] = 1
        }
        for j in 0..<cols { hd.base[j * cols + j] += T(options.dampening) }
        // Wn = W D (in w), XY = Wn Hd (in target).
        parallelFor(workers: workers) { worker in
            let scratch = convert.base + worker * cols
            for r in partition(rows, workers: workers, worker: worker) {
                let row = w.base + r * cols
                T.load(weights, row: r, from: 0, count: cols, into: row, scratch: scratch)
                for j in 0..<cols { row[j] = T(row[j].double * s[j]) }
                for j in dead { row[j] = 0 }
            }
        }
        T.gemm(m: rows, n: cols, k: cols, alpha: 1, a: w.base, lda: cols, b: hd.base, ldb: cols, beta: 0,
               c: target.base, ldc: cols)
        u.base.update(repeating: 0, count: total)
        if let givenMask {
            for i in 0..<total { pruned.base[i] = givenMask[i] == 0 ? 1 : 0 }
        }

        var rho = options.rho
        try factor(hd.base, rho: rho, n: cols, into: inverse.base)
        let chooses = givenMask == nil
        for t in 0..<options.iterations {
            // work = W + U; the mask from it while the ramp lasts (or once, without a ramp).
            parallelFor(workers: workers) { worker in
                for i in partition(rows, workers: workers, worker: worker) {
                    let a = w.base + i * cols, b = u.base + i * cols, c = work.base + i * cols
                    for j in 0..<cols { c[j] = a[j] + b[j] }
                }
            }
            if chooses, t < options.rampIterations || (t == 0 && options.rampIterations == 0) {
                chooseMask(work.base, options: options, iteration: t, rows: rows, cols: cols, ones: ones.base,
                           keys: keys.base, pruned: pruned.base, ranking: ranking?.base, workers: workers)
            }
            // Z = (W + U) on the kept entries, U := (W + U) - Z (the pruned ones), and the
            // right-hand side XY + ρ (Z - U) in work.
            let r = T(rho)
            parallelFor(workers: workers) { worker in
                for i in partition(rows, workers: workers, worker: worker) {
                    let sum = work.base + i * cols, dual = u.base + i * cols, xy = target.base + i * cols
                    let gone = pruned.base + i * cols
                    for j in 0..<cols {
                        let x = sum[j], p = gone[j] != 0
                        dual[j] = p ? x : 0
                        sum[j] = xy[j] + r * (p ? -x : x)
                    }
                }
            }
            // W = (XY + ρ (Z - U)) (Hd + ρ I)^-1.
            T.gemm(m: rows, n: cols, k: cols, alpha: 1, a: work.base, lda: cols, b: inverse.base, ldb: cols, beta: 0,
                   c: w.base, ldc: cols)
            if options.rhoGrowth != 1, (t + 1) % options.rhoInterval == 0, t + 1 < options.iterations {
                rho *= options.rhoGrowth
                try factor(hd.base, rho: rho, n: cols, into: inverse.base)
            }
        }
        if chooses, options.iterations == 0 {
            chooseMask(w.base, options: options, iteration: 0, rows: rows, cols: cols, ones: ones.base,
                       keys: keys.base, pruned: pruned.base, ranking: ranking?.base, workers: workers)
        }
        // The result on the support: Z = (W + U) on the kept entries (in w).
        parallelFor(workers: workers) { worker in
            for i in partition(rows, workers: workers, worker: worker) {
                let a = w.base + i * cols, b = u.base + i * cols, gone = pruned.base + i * cols
                for j in 0..<cols { a[j] = gone[j] != 0 ? 0 : a[j] + b[j] }
                for j in dead { a[j] = 0 }
            }
        }
        if options.refineIterations > 0 {
            refine(w.base, target: target.base, hd: hd.base, pruned: pruned.base, rows: rows, cols: cols,
                   steps: options.refineIterations, residual: u.base, direction: work.base, product: product.base,
                   workers: workers)
        }
        // Back to the caller's scale: W' = Z D^-1.
        parallelFor(workers: workers) { worker in
            for i in partition(rows, workers: workers, worker: worker) {
                let a = w.base + i * cols
                for j in 0..<cols { a[j] = T(a[j].double / s[j]) }
                for j in dead { a[j] = 0 }
            }
        }
        try checkFiniteResult(w.base, count: total, cols: cols)
        try OBS<T>.storeRows(w.base, rows: rows, cols: cols, into: output, threads: options.threads)
        if let maskOut {
            for i in 0..<total { maskOut[i] = pruned.base[i] == 0 ? 1 : 0 }
        }
    }

    /// (Hd + ρ I)^-1 into `into`.
    static func factor(_ hd: UnsafePointer<T>, rho: Double, n: Int, into a: UnsafeMutablePointer<T>) throws(PruneKitError) {
        a.update(from: hd, count: n * n)
        for i in 0..<n { a[i * n + i] += T(rho) }
        guard T.choleskyUpper(a, n: n) == 0, T.inverseFromCholesky(a, n: n) == 0, T.allFinite(a, count: n * n) else {
            throw PruneKitError(.numeric, "the normalised hessian plus rho = \(rho) is not positive definite")
        }
    }

    /// The mask (1 = pruned in `pruned`) of the projection of `x` at iteration t's sparsity,
    /// ranked by (x^2, position): per layer, per row, or N:M (during the ramp, the entries N:M
    /// would keep are never pruned and the rest compete per layer, as in the reference).
    static func chooseMask(_ x: UnsafeMutablePointer<T>, options: ADMMOptions, iteration t: Int, rows: Int, cols: Int,
                           ones: UnsafePointer<T>, keys: UnsafeMutablePointer<UInt64>, pruned: UnsafeMutablePointer<UInt8>,
                           ranking: UnsafeMutablePointer<T>?, workers: Int) {
        let sparsity = options.rampSparsity(iteration: t)
        switch options.pattern {
        case .layer:
            OBS<T>.chooseBlockMask(x, ones, rows: rows, cols: cols, start: 0, count: cols,
                                   k: prunedCount(groupSize: rows * cols, sparsity: sparsity), keys: keys, pruned: pruned,
                                   workers: workers)
        case .row:
            let k = prunedCount(groupSize: cols, sparsity: sparsity)
            parallelFor(workers: workers) { worker in
                for r in partition(rows, workers: workers, worker: worker) {
                    OBS<T>.chooseBlockMask(x + r * cols, ones, rows: 1, cols: cols, start: 0, count: cols, k: k,
                                           keys: keys + r * cols, pruned: pruned + r * cols, workers: 1)
                }
            }
        case .nm(let n, let m):
            parallelFor(workers: workers) { worker in
                for r in partition(rows, workers: workers, worker: worker) {
                    for g in stride(from: 0, to: cols, by: m) {
                        OBS<T>.chooseGroupMask(x + r * cols, ones, column: g, n: n, m: m, pruned: pruned + r * cols)
                    }
                }
            }
            guard t + 1 < options.rampIterations, let ranking else { return }
            // Mid-ramp: what N:M keeps ranks last (an infinite key); the rest compete per layer.
            let k = prunedCount(groupSize: rows * cols, sparsity: sparsity)
            parallelFor(workers: workers) { worker in
                for r in partition(rows, workers: workers, worker: worker) {
                    let row = x + r * cols, copy = ranking + r * cols, gone = pruned + r * cols
                    for j in 0..<cols { copy[j] = gone[j] == 0 ? .infinity : row[j] }
                }
            }
            OBS<T>.chooseBlockMask(ranking, ones, rows: rows, cols: cols, start: 0, count: cols, k: k, keys: keys,
                                   pruned: pruned, workers: workers)
        }
    }

    /// Conjugate gradient, row by row (each row is its own quadratic), on the support (pruned == 0):
    /// minimises (Z - Wn) Hd (Z - Wn)^T, whose gradient is Z Hd - XY. One GEMM per step.
    static func refine(_ z: UnsafeMutablePointer<T>, target: UnsafePointer<T>, hd: UnsafePointer<T>,
                       pruned: UnsafePointer<UInt8>, rows: Int, cols: Int, steps: Int, residual g: UnsafeMutablePointer<T>,
                       direction p: UnsafeMutablePointer<T>, product q: UnsafeMutablePointer<T>, workers: Int) {
        // q is rows x cols here: the caller passes a buffer of at least that size.
        T.gemm(m: rows, n: cols, k: cols, alpha: 1, a: z, lda: cols, b: hd, ldb: cols, beta: 0, c: g, ldc: cols)
        var norms = [Double](repeating: 0, count: rows)
        norms.withUnsafeMutableBufferPointer { rr in
            parallelFor(workers: workers) { worker in
                for r in partition(rows, workers: workers, worker: worker) {
                    let gr = g + r * cols, pr = p + r * cols, xy = target + r * cols, gone = pruned + r * cols
                    var sum = 0.0
                    for j in 0..<cols {
                        let v = gone[j] != 0 ? 0 : gr[j] - xy[j]
                        gr[j] = v
                        pr[j] = -v
                        sum += v.double * v.double
                    }
                    rr[r] = sum
                }
            }
        }
        for _ in 0..<steps {
            T.gemm(m: rows, n: cols, k: cols, alpha: 1, a: p, lda: cols, b: hd, ldb: cols, beta: 0, c: q, ldc: cols)
            norms.withUnsafeMutableBufferPointer { rr in
                parallelFor(workers: workers) { worker in
                    for r in partition(rows, workers: workers, worker: worker) where rr[r] > 0 {
                        let zr = z + r * cols, gr = g + r * cols, pr = p + r * cols, qr = q + r * cols, gone = pruned + r * cols
                        var curvature = 0.0
                        for j in 0..<cols { curvature += pr[j].double * qr[j].double }
                        // A row whose direction has no positive curvature is done.
                        guard curvature > 0, curvature.isFinite else { rr[r] = 0; continue }
                        let alpha = T(rr[r] / curvature)
                        var sum = 0.0
                        for j in 0..<cols where gone[j] == 0 {
                            zr[j] += alpha * pr[j]
                            gr[j] += alpha * qr[j]
                            sum += gr[j].double * gr[j].double
                        }
                        let beta = T(sum / rr[r])
                        for j in 0..<cols { pr[j] = gone[j] != 0 ? 0 : -gr[j] + beta * pr[j] }
                        rr[r] = sum
                    }
                }
            }
        }
    }
}

/// Every result finite (an overflow of the output's dtype is `storeRows`'s check).
func checkFiniteResult<T: ReconstructionScalar>(_ values: UnsafePointer<T>, count: Int, cols: Int) throws(PruneKitError) {
    if !T.allFinite(values, count: count) {
        var bad = 0
        while values[bad].isFinite { bad += 1 }
        throw PruneKitError(.numeric, "the update produced a non-finite weight at row \(bad / cols), column \(bad % cols)")
    }
}
