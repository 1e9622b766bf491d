/// Second-order pruning with weight updates: SparseGPT's OBS procedure, reconstruction of the kept
/// weights under any given mask, and closed-form compensation for pruned input columns.
///
/// The Hessian is any positive multiple of X^T X over the layer's calibration inputs (the result
/// does not depend on the scale), features x features, row-major float64, symmetric.
public struct ReconstructionOptions: Sendable, Equatable {
    /// What SparseGPT chooses: `.unstructured(sparsity:)` prunes exactly floor(s * rows * B)
    /// entries of every block of B columns (the whole block competes, as in SparseGPT; ties by
    /// row-major position in the block); `.nm(n:m:)` keeps n of every m consecutive columns per
    /// row, chosen when the group is reached, from the already updated weights.
    public enum Pattern: Sendable, Equatable {
        case unstructured(sparsity: Double)
        case nm(n: Int, m: Int)
    }

    public var pattern: Pattern
    /// Columns per block (SparseGPT's default: 128).
    public var blockSize: Int
    /// Dampening added to the diagonal, as a fraction of its mean (default 0.01).
    public var dampening: Double
    /// When the dampened Hessian is not positive definite, retry with the dampening multiplied by
    /// 10, at most this many times (default 4), then fail with `.numeric`. The retries also make
    /// an indefinite matrix factorable once the dampening passes its most negative eigenvalue
    /// (it is not detected); 0 refuses anything the first dampening does not make positive definite.
    public var maxDampeningRetries: Int
    public var precision: Precision
    /// Worker threads for the per-row work, 0 = one per CPU. OpenBLAS uses its own threads.
    public var threads: Int

    public init(pattern: Pattern = .unstructured(sparsity: 0.5), blockSize: Int = 128, dampening: Double = 0.01,
                maxDampeningRetries: Int = 4, precision: Precision = .float32, threads: Int = 0) {
        self.pattern = pattern
        self.blockSize = blockSize
        self.dampening = dampening
        self.maxDampeningRetries = maxDampeningRetries
        self.precision = precision
        self.threads = threads
    }

    func validate(cols: Int) throws(PruneKitError) {
        guard blockSize > 0 else { throw .invalidArgument("block size must be positive, got \(blockSize)") }
        guard dampening >= 0, dampening.isFinite else { throw .invalidArgument("dampening must be finite and >= 0, got \(dampening)") }
        guard maxDampeningRetries >= 0 else { throw .invalidArgument("max dampening retries must be >= 0") }
        try checkThreads(threads)
        switch pattern {
        case .unstructured(let s):
            try checkSparsity(s)
        case .nm(let n, let m):
            try checkNM(n, m, cols: cols)
            guard blockSize % m == 0 else {
                throw .invalidShape("\(n):\(m) needs M to divide the block size, but the block size is \(blockSize)")
            }
        }
    }
}

/// What a reconstruction call does with the mask.
enum MaskSource {
    case choose                            // SparseGPT: chosen block by block
    case given(UnsafePointer<UInt8>)       // reconstruct: 1 = keep
}

/// SparseGPT on one layer. Writes the mask (1 = keep) and the updated weights only on success;
/// `output` may be the weights' own memory (in place) and may have another dtype.
/// The C function is `pk_sparsegpt`.
package func sparseGPT(weights: MatrixView, hessian: UnsafePointer<Double>, hessianSize: Int,
                      options: ReconstructionOptions, mask: UnsafeMutablePointer<UInt8>?, output: MatrixView) throws(PruneKitError) {
    try reconstruct(weights: weights, hessian: hessian, hessianSize: hessianSize, options: options,
                    source: .choose, maskOut: mask, output: output)
}

/// Updates the kept weights under a given mask (1 = keep) with SparseGPT's OBS machinery, so any
/// criterion's mask gets the second-order update. `options.pattern` is ignored.
/// The C function is `pk_reconstruct`.
package func reconstructWeights(weights: MatrixView, hessian: UnsafePointer<Double>, hessianSize: Int,
                               mask: UnsafePointer<UInt8>, options: ReconstructionOptions, output: MatrixView) throws(PruneKitError) {
    try reconstruct(weights: weights, hessian: hessian, hessianSize: hessianSize, options: options,
                    source: .given(mask), maskOut: nil, output: output)
}

func reconstruct(weights: MatrixView, hessian: UnsafePointer<Double>, hessianSize: Int, options: ReconstructionOptions,
                 source: MaskSource, maskOut: UnsafeMutablePointer<UInt8>?, output: MatrixView) throws(PruneKitError) {
    try checkReconstructionInputs(weights: weights, hessian: hessian, hessianSize: hessianSize, output: output,
                                  threads: options.threads)
    if case .choose = source { try options.validate(cols: weights.cols) } else {
        guard options.blockSize > 0 else { throw .invalidArgument("block size must be positive, got \(options.blockSize)") }
        try checkThreads(options.threads)
    }
    if case .given(let m) = source { try checkMaskBytes(m, count: weights.rows * weights.cols) }
    switch options.precision {
    case .float32: try OBS<Float>.run(weights, hessian, options, source, maskOut, output)
    case .float64: try OBS<Double>.run(weights, hessian, options, source, maskOut, output)
    }
}

/// Shapes, finiteness, symmetry: everything checked before anything is written.
func checkReconstructionInputs(weights: MatrixView, hessian: UnsafePointer<Double>, hessianSize: Int, output: MatrixView,
                               threads: Int) throws(PruneKitError) {
    let n = weights.cols
    guard hessianSize == n else {
        throw .invalidShape("hessian is \(hessianSize) x \(hessianSize), the weights have \(n) columns")
    }
    guard output.rows == weights.rows, output.cols == weights.cols else {
        throw .invalidShape("output is \(output.rows) x \(output.cols), weights are \(weights.rows) x \(weights.cols)")
    }
    for i in 0..<n {
        let d = hessian[i * n + i]
        guard d.isFinite else { throw .nonFinite("hessian at row \(i), column \(i) is \(d)") }
        guard d >= 0 else { throw .invalidArgument("hessian diagonal at \(i) is negative (\(d)): not a Gram matrix") }
    }
    // Compared in the normalised units the factorisation works in, so that a Hessian in the
    // subnormal range is checked as its scaled-up copy would be.
    let scale = HessianScale(hessian, n: n)
    // Tiles of 64 x 64 against their mirror tiles, so both reads stay in cache. Tile rows are
    // dealt to workers in turn (the rows shrink along the triangle); each worker stops at its
    // first bad entry, and the error of the lowest tile row is the one a serial scan meets first.
    let tile = 64, tileRows = (n + tile - 1) / tile
    let tileWorkers = resolveThreads(threads, work: tileRows)
    var firstErrors = [(tileRow: Int, error: PruneKitError)?](repeating: nil, count: tileWorkers)
    firstErrors.withUnsafeMutableBufferPointer { found in
        parallelFor(workers: tileWorkers) { worker in
            for tileRow in stride(from: worker, to: tileRows, by: tileWorkers) {
                if let error = checkSymmetricTileRow(hessian, n: n, from: tileRow * tile, tile: tile, scale: scale) {
                    found[worker] = (tileRow, error)
                    return
                }
            }
        }
    }
    if let first = firstErrors.compactMap({ $0 }).min(by: { $0.tileRow < $1.tileRow }) { throw first.error }
    // Weights: finite, checked in parallel by the mask engine's validation (same messages).
    let kernel = try ScoreKernel(weights: weights, criterion: .magnitude)
    let workers = resolveThreads(threads, work: weights.rows)
    try MaskEngine.validate(kernel: kernel, workers: workers, scratches: try makeScratches(workers: workers, cols: weights.cols))
}

/// The first non-finite or asymmetric entry of the Hessian in tile row [ti, ti + tile), tile by
/// tile against the mirror tiles, or nil.
private func checkSymmetricTileRow(_ hessian: UnsafePointer<Double>, n: Int, from ti: Int, tile: Int,
                                   scale: HessianScale) -> PruneKitError? {
    for tj in stride(from: ti, to: n, by: tile) {
        for i in ti..<min(ti + tile, n) {
            for j in max(tj, i + 1)..<max(max(tj, i + 1), min(tj + tile, n)) {
                let a = hessian[i * n + j], b = hessian[j * n + i]
                guard a.isFinite, b.isFinite else {
                    return .nonFinite("hessian at row \(a.isFinite ? j : i), column \(a.isFinite ? i : j) is \(a.isFinite ? b : a)")
                }
                let sa = scale.apply(a), sb = scale.apply(b)
                if abs(sa - sb) > 1e-6 * (abs(sa) + abs(sb)) + 1e-12 * scale.largestDiagonal {
                    return .invalidArgument("hessian is not symmetric: (\(i), \(j)) = \(a) but (\(j), \(i)) = \(b)")
                }
            }
        }
    }
    return nil
}

/// The power of 2 that brings a Hessian's largest diagonal entry into [1, 2) (1 when the
/// diagonal is all zeros), applied to every entry before the factorisation, so that results do
/// not depend on the Hessian's scale: float32 arithmetic neither underflows (max |H| below about
/// 1e-36 used to change the mask) nor overflows (H * 1e40), and float64 Hessians in the
/// subnormal range keep the precision they have. Scaling by a power of 2 is exact, so H and
/// 2^k H give the same bits, and other multiples the same up to round-off. As two factors,
/// since 2^k for the smallest subnormals is above float64's range.
struct HessianScale: Sendable {
    let first: Double, second: Double
    /// The largest diagonal entry after scaling: in [1, 2), or 0.
    let largestDiagonal: Double

    init(_ hessian: UnsafePointer<Double>, n: Int) {
        var largest = 0.0
        for i in 0..<n { largest = max(largest, hessian[i * n + i]) }
        guard largest > 0, largest.isFinite else {
            (first, second, largestDiagonal) = (1, 1, largest)
            return
        }
        let k = -Int(largest.exponent)
        first = Double(sign: .plus, exponent: k / 2, significand: 1)
        second = Double(sign: .plus, exponent: k - k / 2, significand: 1)
        largestDiagonal = largest * first * second
    }

    @inline(__always)
    func apply(_ x: Double) -> Double { x * first * second }
}

/// The factorisations shared by SparseGPT and column compensation: a dampened copy of the
/// Hessian, with retries.
enum Factor<T: ReconstructionScalar> {
    /// Copies the Hessian (restricted to `indices` if given) into `into`, adds dampening and
    /// factors it; retries with 10x the dampening when it is not positive definite.
    static func dampenedCholesky(_ hessian: UnsafePointer<Double>, n full: Int, indices: [Int]?, options: ReconstructionOptions,
                                 into a: UnsafeMutablePointer<T>, after: (UnsafeMutablePointer<T>, Int) -> Int32 = { _, _ in 0 }) throws(PruneKitError) {
        let idx = indices ?? Array(0..<full)
        try dampenedCholesky(hessian, n: full, order: idx, options: options, into: a, after: after)
    }

    /// As above over the rows and columns `order` (in that order); with `lowerFactor` the lower
    /// factor L (A = L L^T, row-major lower triangle) instead of the upper one.
    static func dampenedCholesky(_ hessian: UnsafePointer<Double>, n full: Int, order idx: [Int], options: ReconstructionOptions,
                                 lowerFactor: Bool = false, into a: UnsafeMutablePointer<T>,
                                 after: (UnsafeMutablePointer<T>, Int) -> Int32) throws(PruneKitError) {
        let n = idx.count
        let scale = HessianScale(hessian, n: full), s1 = scale.first, s2 = scale.second
        // Inputs that never fire (zero diagonal) get the mean of the others' diagonal entries
        // (SparseGPT sets 1, which is not scale-free; with a mean of 1 the two agree), so they do
        // not change the dampening. All in normalised units.
        var meanDiagonal = 0.0, liveSum = 0.0, live = 0
        for i in idx {
            let d = scale.apply(hessian[i * full + i])
            meanDiagonal += d / Double(n)
            if d != 0 { liveSum += d; live += 1 }
        }
        let deadDiagonal = live == 0 ? 1 : liveSum / Double(live)
        if live < n { meanDiagonal = deadDiagonal }
        var damp = options.dampening * meanDiagonal
        for attempt in 0...options.maxDampeningRetries {
            idx.withUnsafeBufferPointer { ix in
                // Concrete per precision: the generic conversion is a witness call per element.
                // Rows split among workers (each writes its own rows).
                let workers = resolveThreads(options.threads, work: n)
                // The whole Hessian in reverse order (SparseGPT): rows read backwards, which
                // vectorizes where a gather through the index list does not.
                let reversed = n == full && n > 0 && ix[0] == n - 1 && ix[n - 1] == 0 && (0..<n).allSatisfy { ix[$0] == n - 1 - $0 }
                if T.self == Float.self, reversed {
                    let f = UnsafeMutableRawPointer(a).assumingMemoryBound(to: Float.self)
                    parallelFor(workers: workers) { worker in
                        for p in partition(n, workers: workers, worker: worker) {
                            let source = hessian + (n - 1 - p) * full + (n - 1), row = f + p * n
                            for q in 0..<n { row[q] = Float(source[-q] * s1 * s2) }
                        }
                    }
                } else if T.self == Float.self {
                    let f = UnsafeMutableRawPointer(a).assumingMemoryBound(to: Float.self)
                    parallelFor(workers: workers) { worker in
                        for p in partition(n, workers: workers, worker: worker) {
                            let source = hessian + ix[p] * full, row = f + p * n
                            for q in 0..<n { row[q] = Float(source[ix[q]] * s1 * s2) }
                        }
                    }
                } else if reversed {
                    let d = UnsafeMutableRawPointer(a).assumingMemoryBound(to: Double.self)
                    parallelFor(workers: workers) { worker in
                        for p in partition(n, workers: workers, worker: worker) {
                            let source = hessian + (n - 1 - p) * full + (n - 1), row = d + p * n
                            for q in 0..<n { row[q] = source[-q] * s1 * s2 }
                        }
                    }
                } else {
                    let d = UnsafeMutableRawPointer(a).assumingMemoryBound(to: Double.self)
                    parallelFor(workers: workers) { worker in
                        for p in partition(n, workers: workers, worker: worker) {
                            let source = hessian + ix[p] * full, row = d + p * n
                            for q in 0..<n { row[q] = source[ix[q]] * s1 * s2 }
                        }
                    }
                }
                for p in 0..<n {
                    if hessian[ix[p] * full + ix[p]] == 0 { a[p * n + p] = T(deadDiagonal) }
                    a[p * n + p] += T(damp)
                }
            }
            let info = lowerFactor ? T.choleskyLower(a, n: n) : T.choleskyUpper(a, n: n)
            if info == 0, after(a, n) == 0 {
                if T.allFinite(a, count: n * n) { return }
            }
            if attempt < options.maxDampeningRetries { damp = max(damp * 10, 1e-8 * meanDiagonal) }
        }
        throw PruneKitError(.numeric,
            "the hessian is not positive definite after \(options.maxDampeningRetries) dampening retries "
            + "(last dampening \(damp / meanDiagonal) of the mean diagonal)")
    }
}

/// SparseGPT's OBS procedure in precision T.
enum OBS<T: ReconstructionScalar> {
    static func run(_ weights: MatrixView, _ hessian: UnsafePointer<Double>, _ options: ReconstructionOptions,
                    _ source: MaskSource, _ maskOut: UnsafeMutablePointer<UInt8>?, _ output: MatrixView) throws(PruneKitError) {
        // The procedure, column c at a time: with U the upper Cholesky factor of the inverse of
        // the dampened Hessian (Hinv = U^T U) and w the row as updated so far, prune or keep
        // w_c (q_c = 0 or w_c), e_c = (w_c - q_c) / U_cc, and w_j -= e_c U_cj for j > c.
        //
        // Summed over all columns this is e U = W0 - Q (W0 the original weights, Q the result),
        // so e = (W0 - Q) V with V = U^-1, the upper factor of H = V V^T, which one Cholesky
        // factorisation gives: with J the reversal, J H J = L L^T and V = J L J. Splitting
        // the columns before a block (<s) from the block's (B), U_{<s,B} = -U_{<s,<s} V_{<s,B}
        // U_BB, so the block's weights as the procedure reaches it are
        //     W_B = W0_B - e_{<s} U_{<s,B} = W0_B + Z_B U_BB,  Z_B = (W0 - Q)_{<s} V_{<s,B}.
        // Z is accumulated block by block (one GEMM per block with V, as SparseGPT's lazy batch
        // does with U); U_BB is the inverse of one 128 x 128 diagonal block of V. No inverse of
        // the whole factor is formed (SparseGPT: factor, inverse, factor).
        // A block wider than the layer is the whole layer: the scratch buffers are sized by the
        // block, so a block size near Int32.max on a small layer used to ask for gigabytes.
        let rows = weights.rows, cols = weights.cols, blockSize = min(options.blockSize, cols)
        let workers = resolveThreads(options.threads, work: rows)
        // w: Z for the columns not reached yet, the results for those done.
        // Neither needs clearing: the first block's cross GEMM writes Z for every later column
        // (beta 0), each block's columns are loaded before use, and every mask entry is written
        // (the given mask, or each block or group as it is chosen).
        let w = try ScratchBuffer<T>(count: try checkedProduct(rows, cols, "weights"))
        let pruned = try ScratchBuffer<UInt8>(count: rows * cols)
        let v = try ScratchBuffer<T>(count: try checkedProduct(cols, cols, "hessian"))
        let scratch = try ScratchBuffer<Double>(count: workers * blockSize)
        // Per block: W0_B (then W0_B - Q_B), Z_B, U_BB, and U's diagonal for the whole layer.
        let origin = try ScratchBuffer<T>(count: rows * blockSize)
        let reached = try ScratchBuffer<T>(count: rows * blockSize)
        let inverse = try ScratchBuffer<T>(count: blockSize * blockSize)
        let diagonal = try ScratchBuffer<T>(count: cols)
        let keys = try ScratchBuffer<UInt64>(count: rows * blockSize)
        let prunedList = try ScratchBuffer<Int32>(count: workers * blockSize)
        defer { keepAlive(w, pruned, v, scratch, origin, reached, inverse, diagonal, keys, prunedList) }
        if case .given(let keep) = source {
            for i in 0..<(rows * cols) { pruned.base[i] = keep[i] == 0 ? 1 : 0 }
        }
        try Factor<T>.dampenedCholesky(hessian, n: cols, order: Array((0..<cols).reversed()), options: options,
                                       lowerFactor: true, into: v.base) { a, n in
            // J H J = L L^T, so H = (J L J)(J L J)^T and V = J L J: V[i][j] = L[n-1-i][n-1-j],
            // the whole buffer read backwards. Rows i and n-1-i swap reversed, a pair per step
            // (pairs split among workers); then the part below V's diagonal (LAPACK left the
            // other triangle of J H J there) is cleared.
            let pairs = (n + 1) / 2
            parallelFor(workers: min(workers, pairs)) { worker in
                for i in partition(pairs, workers: min(workers, pairs), worker: worker) {
                    let top = a + i * n, bottom = a + (n - 1 - i) * n
                    if top == bottom {
                        for j in 0..<(n / 2) { swap(&top[j], &top[n - 1 - j]) }
                    } else {
                        for j in 0..<n { swap(&top[j], &bottom[n - 1 - j]) }
                        for j in 0..<(n - 1 - i) { bottom[j] = 0 }
                    }
                    for j in 0..<i { top[j] = 0 }
                }
            }
            return 0
        }
        // N:M groups chosen on the way (nil otherwise), decided once instead of per column.
        let groups: (n: Int, m: Int)? = {
            if case .choose = source, case .nm(let n, let m) = options.pattern { return (n, m) }
            return nil
        }()
        var start = 0
        while start < cols {
            let end = min(start + blockSize, cols), count = end - start
            // U_BB = V_BB^-1 (upper; LAPACK's diagonal is 1 / V_cc, as the whole inverse's).
            for i in 0..<count {
                for j in 0..<count { inverse.base[i * count + j] = j < i ? 0 : v.base[(start + i) * cols + start + j] }
            }
            if T.invertUpperFactor(inverse.base, n: count) != 0 {
                throw PruneKitError(.numeric, "the factor of the hessian is singular in columns \(start)..<\(end)")
            }
            for i in 0..<count { diagonal.base[start + i] = inverse.base[i * count + i] }
            // W_B = W0_B + Z_B U_BB. W0 is the caller's weights, read again (nothing has been
            // written to them); inputs that never fire carry no information and their weights
            // go, as in SparseGPT (found once per block, not per row).
            let dead = (0..<count).filter { hessian[(start + $0) * cols + start + $0] == 0 }
            parallelFor(workers: workers) { worker in
                for r in partition(rows, workers: workers, worker: worker) {
                    let row = w.base + r * cols + start, original = origin.base + r * count
                    T.load(weights, row: r, from: start, count: count, into: original, scratch: scratch.base + worker * blockSize)
                    for i in dead { original[i] = 0 }
                    if start > 0 { (reached.base + r * count).update(from: row, count: count) }
                    row.update(from: original, count: count)
                }
            }
            if start > 0 {
                T.gemm(m: rows, n: count, k: count, alpha: 1, a: reached.base, lda: count, b: inverse.base, ldb: count,
                       beta: 1, c: w.base + start, ldc: cols)
            }
            if case .choose = source, case .unstructured(let sparsity) = options.pattern {
                chooseBlockMask(w.base, diagonal.base, rows: rows, cols: cols, start: start, count: count,
                                k: prunedCount(groupSize: rows * count, sparsity: sparsity), keys: keys.base, pruned: pruned.base,
                                workers: workers)
            }
            // Column by column inside the block, row by row: rows are independent inside a
            // block, so each worker takes whole rows through the block, with the row's block
            // segment and U_BB in cache. A kept entry has no error and updates nothing, so each
            // segment's pruned columns are listed first (without branches: the pattern is
            // random) and only they are visited, in column order. A segment is an N:M group,
            // chosen from the updated weights when it is reached, or the whole block. Then
            // origin := W0_B - Q_B for the next GEMM. Each row sees the same operations in the
            // same order whatever the partition.
            let segment = groups?.m ?? count, wide = wideKernels
            parallelFor(workers: workers) { worker in
                let list = prunedList.base + worker * blockSize
                for r in partition(rows, workers: workers, worker: worker) {
                    let row = w.base + r * cols, prunedRow = pruned.base + r * cols
                    var first = start
                    while first < end {
                        let last = min(first + segment, end)
                        if let groups {
                            chooseGroupMask(row, diagonal.base, column: first, n: groups.n, m: groups.m, pruned: prunedRow)
                        }
                        var listed = 0
                        for c in first..<last {
                            list[listed] = Int32(truncatingIfNeeded: c)
                            listed &+= Int(prunedRow[c] & 1)
                        }
                        blockUpdates(row, list: list, listed: listed, diagonal: diagonal.base, inverse: inverse.base,
                                     start: start, end: end, count: count, wide: wide)
                        first = last
                    }
                    let original = origin.base + r * count, done = row + start
                    for i in 0..<count { original[i] -= done[i] }
                }
            }
            // Z for the columns after the block: += (W0_B - Q_B) V[B, end...].
            if end < cols {
                T.gemm(m: rows, n: cols - end, k: count, alpha: 1, a: origin.base, lda: count,
                       b: v.base + start * cols + end, ldb: cols, beta: start == 0 ? 0 : 1, c: w.base + end, ldc: cols)
            }
            start = end
        }
        // Write the results (everything was checked before any of this).
        if !T.allFinite(w.base, count: rows * cols) {
            var bad = 0
            while w.base[bad].isFinite { bad += 1 }
            throw PruneKitError(.numeric, "the update produced a non-finite weight at row \(bad / cols), column \(bad % cols)")
        }
        try storeRows(w.base, rows: rows, cols: cols, into: output, threads: options.threads)
        if let maskOut {
            for i in 0..<(rows * cols) { maskOut[i] = pruned.base[i] == 0 ? 1 : 0 }
        }
    }

    /// One row's updates inside a block: for each listed (pruned) column c, in list order,
    /// e = w_c / U_cc, w_c = 0 and w_j -= e U_cj for c < j < end (U_BB row c is
    /// `inverse + (c - start) * count`). `wide`: the AVX2 kernel, the same arithmetic.
    @inline(__always)
    static func blockUpdates(_ row: UnsafeMutablePointer<T>, list: UnsafePointer<Int32>, listed: Int, diagonal: UnsafePointer<T>,
                             inverse: UnsafePointer<T>, start: Int, end: Int, count: Int, wide: Bool) {
        if wide {
            T.wideUpdates(row, list, listed, diagonal, inverse, start, end, count)
            return
        }
        for i in 0..<listed {
            let c = Int(list[i])
            let e = row[c] / diagonal[c]
            row[c] = 0
            let inverseRow = inverse + (c - start) * count - start
            for j in (c + 1)..<end { row[j] -= e * inverseRow[j] }
        }
    }

    /// Unstructured: the k lowest w^2 / d^2 of the block (row-major position breaks ties).
    /// Keys and their range are computed by row partition, the entry of rank k is found by the
    /// k-th selection (`KthSelection`), and the marking runs by row partition again, so the result
    /// does not depend on the number of workers.
    static func chooseBlockMask(_ w: UnsafeMutablePointer<T>, _ diagonal: UnsafePointer<T>, rows: Int, cols: Int, start: Int, count: Int,
                                k: Int, keys: UnsafeMutablePointer<UInt64>, pruned: UnsafeMutablePointer<UInt8>, workers: Int) {
        guard k > 0 else {
            for r in 0..<rows { (pruned + r * cols + start).update(repeating: 0, count: count) }
            return
        }
        // d^2 of the block's columns, once (the same product as per entry).
        var squares = [T](repeating: 0, count: count)
        for i in 0..<count { squares[i] = diagonal[start + i] * diagonal[start + i] }
        var ranges = [(low: UInt64, high: UInt64)](repeating: (.max, 0), count: workers)
        ranges.withUnsafeMutableBufferPointer { slots in
            squares.withUnsafeBufferPointer { dd in
            parallelFor(workers: workers) { worker in
                var low = UInt64.max, high: UInt64 = 0
                for r in partition(rows, workers: workers, worker: worker) {
                    let row = w + r * cols + start
                    for i in 0..<count {
                        let x = row[i]
                        let key = (x * x / dd[i]).orderKey64
                        keys[r * count + i] = key
                        low = min(low, key)
                        high = max(high, key)
                    }
                }
                slots[worker] = (low, high)
            }
            }
        }
        let binBits = 12
        var bins = [Int](repeating: 0, count: 2 << binBits)
        let cut = bins.withUnsafeMutableBufferPointer { b in
            KthSelection.select(keys: UnsafeRawPointer(keys), n: rows * count, k: k, lowest: ranges.map(\.low).min()!,
                                highest: ranges.map(\.high).max()!, binBits: binBits, candidates: nil, bins: b.baseAddress!)
        }
        parallelFor(workers: workers) { worker in
            for r in partition(rows, workers: workers, worker: worker) {
                let rowKeys = keys + r * count, rowPruned = pruned + r * cols + start
                // Without a branch: half the entries go, in no pattern a predictor can follow.
                // Positions up to the cut's go with an equal key too.
                let split = min(count, max(0, cut.position - r * count + 1))
                for i in 0..<split { rowPruned[i] = rowKeys[i] <= cut.key ? 1 : 0 }
                for i in split..<count { rowPruned[i] = rowKeys[i] < cut.key ? 1 : 0 }
            }
        }
    }

    /// N:M: in columns column..<column+m of one row, prune the m - n lowest w^2 / d^2.
    static func chooseGroupMask(_ row: UnsafeMutablePointer<T>, _ diagonal: UnsafePointer<T>, column: Int, n: Int, m: Int,
                                pruned: UnsafeMutablePointer<UInt8>) {
        withUnsafeTemporaryAllocation(of: UInt64.self, capacity: m) { keys in
            for i in 0..<m {
                let c = column + i, d = diagonal[c], x = row[c]
                keys[i] = (x * x / (d * d)).orderKey64
            }
            GroupRanking.markLowest(UnsafePointer(keys.baseAddress!), count: m, prune: m - n, pruned: 1, into: pruned + column)
        }
    }

    /// The first of `count` finite values that becomes infinite when written in `dtype`
    /// (float16's largest value is 65504, bfloat16's about 3.39e38, float32's about 3.40e38),
    /// converted as `storeRows` converts, or nil.
    static func firstOverflow(_ w: UnsafePointer<T>, count: Int, in dtype: DType) -> Int? {
        switch dtype {
        case .float64: return nil
        case .float32: return T.self == Float.self ? nil : (0..<count).first { !Float(w[$0].double).isFinite }
        case .float16: return (0..<count).first { !Float16(Float(w[$0].double)).isFinite }
        case .bfloat16: return (0..<count).first { !BFloat16(Float(w[$0].double)).floatValue.isFinite }
        }
    }

    /// Writes the results into the output in its dtype, after checking that every one fits it
    /// (PK_ERROR_NUMERIC, nothing written, otherwise). Rows are split among the caller's
    /// `threads` (0 = one per CPU); each entry is converted on its own, so the bytes do not
    /// depend on the count.
    static func storeRows(_ w: UnsafePointer<T>, rows: Int, cols: Int, into output: MatrixView, threads: Int) throws(PruneKitError) {
        if let bad = firstOverflow(w, count: rows * cols, in: output.dtype) {
            throw PruneKitError(.numeric, "the updated weight at row \(bad / cols), column \(bad % cols) is \(w[bad].double), "
                + "which overflows the output's \(output.dtype)")
        }
        // The working precision is the output's dtype: rows are copied as they are.
        let same = (T.self == Float.self && output.dtype == .float32) || (T.self == Double.self && output.dtype == .float64)
        let workers = resolveThreads(threads, work: rows)
        parallelFor(workers: workers) { worker in
            for r in partition(rows, workers: workers, worker: worker) {
                let row = w + r * cols
                let address = output.rowAddress(r)
                if same {
                    address.copyMemory(from: row, byteCount: cols * MemoryLayout<T>.stride)
                    continue
                }
                switch output.dtype {
                case .float32:
                    let p = address.assumingMemoryBound(to: Float.self)
                    for j in 0..<cols { p[j] = Float(row[j].double) }
                case .float64:
                    let p = address.assumingMemoryBound(to: Double.self)
                    for j in 0..<cols { p[j] = row[j].double }
                case .float16:
                    let p = address.assumingMemoryBound(to: Float16.self)
                    for j in 0..<cols { p[j] = Float16(Float(row[j].double)) }
                case .bfloat16:
                    let p = address.assumingMemoryBound(to: BFloat16.self)
                    for j in 0..<cols { p[j] = BFloat16(Float(row[j].double)) }
                }
            }
        }
    }
}

/// Prunes whole input columns (keep[col] == 0) and compensates with the kept ones in closed form:
/// the least-squares W'_K = W_K + W_P H_PK H_KK^{-1} minimising ||(W - W') X^T||, W'_P = 0.
/// The C function is `pk_prune_columns`.
package func pruneColumns(weights: MatrixView, hessian: UnsafePointer<Double>, hessianSize: Int, keepColumns: UnsafePointer<UInt8>,
                         options: ReconstructionOptions, output: MatrixView) throws(PruneKitError) {
    try checkReconstructionInputs(weights: weights, hessian: hessian, hessianSize: hessianSize, output: output,
                                  threads: options.threads)
    try checkMaskBytes(keepColumns, count: weights.cols)
    guard options.dampening >= 0, options.dampening.isFinite, options.maxDampeningRetries >= 0 else {
        throw .invalidArgument("dampening must be finite and >= 0")
    }
    switch options.precision {
    case .float32: try ColumnCompensation<Float>.run(weights, hessian, keepColumns, options, output)
    case .float64: try ColumnCompensation<Double>.run(weights, hessian, keepColumns, options, output)
    }
}

enum ColumnCompensation<T: ReconstructionScalar> {
    static func run(_ weights: MatrixView, _ hessian: UnsafePointer<Double>, _ keep: UnsafePointer<UInt8>,
                    _ options: ReconstructionOptions, _ output: MatrixView) throws(PruneKitError) {
        let rows = weights.rows, cols = weights.cols
        let kept = (0..<cols).filter { keep[$0] != 0 }, gone = (0..<cols).filter { keep[$0] == 0 }
        let w = try ScratchBuffer<T>(count: rows * cols)
        let scratch = try ScratchBuffer<Double>(count: cols)
        defer { keepAlive(w, scratch) }
        for r in 0..<rows { T.load(weights, row: r, from: 0, count: cols, into: w.base + r * cols, scratch: scratch.base) }
        if !kept.isEmpty && !gone.isEmpty {
            let nk = kept.count, np = gone.count
            let hkk = try ScratchBuffer<T>(count: nk * nk)
            let wp = try ScratchBuffer<T>(count: rows * np), hpk = try ScratchBuffer<T>(count: np * nk)
            let delta = try ScratchBuffer<T>(count: rows * nk)
            defer { keepAlive(hkk, wp, hpk, delta) }
            try Factor<T>.dampenedCholesky(hessian, n: cols, indices: kept, options: options, into: hkk.base)
            for r in 0..<rows { for (p, j) in gone.enumerated() { wp.base[r * np + p] = w.base[r * cols + j] } }
            // In the units of the factor (HessianScale), so the solve gives W_P H_PK H_KK^-1.
            let scale = HessianScale(hessian, n: cols)
            for (p, i) in gone.enumerated() {
                for (q, j) in kept.enumerated() { hpk.base[p * nk + q] = T(scale.apply(hessian[i * cols + j])) }
            }
            // delta = W_P H_PK, then delta := delta H_KK^{-1}.
            T.gemm(m: rows, n: nk, k: np, alpha: 1, a: wp.base, lda: np, b: hpk.base, ldb: nk, beta: 0, c: delta.base, ldc: nk)
            guard T.solveRight(hkk.base, n: nk, b: delta.base, rows: rows) == 0 else {
                throw PruneKitError(.numeric, "solving with the kept columns' hessian failed")
            }
            for r in 0..<rows { for (q, j) in kept.enumerated() { w.base[r * cols + j] += delta.base[r * nk + q] } }
        }
        for r in 0..<rows { for j in gone { w.base[r * cols + j] = 0 } }
        for i in 0..<(rows * cols) where !w.base[i].isFinite {
            throw PruneKitError(.numeric, "the compensation produced a non-finite weight at row \(i / cols), column \(i % cols)")
        }
        try OBS<T>.storeRows(w.base, rows: rows, cols: cols, into: output, threads: options.threads)
    }
}

