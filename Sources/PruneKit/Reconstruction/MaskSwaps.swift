/// Mask refinement by swaps (SparseSwaps, arXiv 2512.10922; DSnoT): starting from any mask, a kept
/// and a pruned entry of one row trade places when that lowers the row's exact output error with
/// the weights left as they are, e(m) = d H d^T with d = w on the pruned entries (the pruned part's
/// contribution to the output, ||d X||^2). Per-row counts (and N:M groups) are kept; the weights are
/// not changed: the result is a mask for hosts that want no weight update.
///
/// With g = H d maintained per row, pruning kept i costs c_i = 2 w_i g_i + w_i^2 H_ii, keeping pruned
/// j gains a_j = 2 w_j g_j - w_j^2 H_jj, and the swap changes the error by exactly
/// c_i - a_j - 2 w_i w_j H_ij. Each step evaluates that exactly for the `candidates` cheapest i and
/// the `candidates` best j (per layer row; for N:M, every pair inside every group) and takes the best
/// pair if it lowers the error; a row stops when no evaluated pair does, or after `maxSwaps`.
public struct SwapOptions: Sendable, Equatable {
    public enum Pattern: Sendable, Equatable {
        /// Any kept entry of a row may trade with any pruned one.
        case row
        /// Trades stay inside each group of m consecutive inputs (the mask must be n:m already).
        case nm(n: Int, m: Int)
    }

    public var pattern: Pattern
    /// At most this many swaps per row (default 100).
    public var maxSwaps: Int
    /// Candidates per side and step for `.row` (default 8): candidates^2 exact evaluations.
    public var candidates: Int
    public var threads: Int

    public init(pattern: Pattern = .row, maxSwaps: Int = 100, candidates: Int = 8, threads: Int = 0) {
        self.pattern = pattern
        self.maxSwaps = maxSwaps
        self.candidates = candidates
        self.threads = threads
    }

    func validate(cols: Int) throws(PruneKitError) {
        guard maxSwaps >= 0, maxSwaps <= 1 << 30 else { throw .invalidArgument("max swaps must be in [0, 2^30], got \(maxSwaps)") }
        guard candidates > 0, candidates <= 1024 else { throw .invalidArgument("candidates must be in [1, 1024], got \(candidates)") }
        try checkThreads(threads)
        if case .nm(let n, let m) = pattern {
            try checkNM(n, m, cols: cols)
        }
    }
}

/// Refines `mask` (1 = keep, rows*cols bytes) in place by swaps; returns the number of swaps made.
/// Every check happens before the mask is written. The C function is `pk_refine_mask`.
package func refineMask(weights: MatrixView, hessian: UnsafePointer<Double>, hessianSize: Int, options: SwapOptions,
                       mask: UnsafeMutablePointer<UInt8>) throws(PruneKitError) -> Int {
    try checkReconstructionInputs(weights: weights, hessian: hessian, hessianSize: hessianSize, output: weights,
                                  threads: options.threads)
    try options.validate(cols: weights.cols)
    let rows = weights.rows, cols = weights.cols
    let total = try checkedProduct(rows, cols, "weights")
    try checkMaskBytes(mask, count: total)
    if case .nm(let n, let m) = options.pattern {
        for r in 0..<rows {
            for g in stride(from: 0, to: cols, by: m) {
                var kept = 0
                for j in g..<(g + m) { kept += Int(mask[r * cols + j]) }
                guard kept == n else {
                    throw .invalidArgument("mask row \(r), columns \(g)...\(g + m - 1) keep \(kept), not \(n) of \(m)")
                }
            }
        }
    }
    let w = try ScratchBuffer<Double>(count: total)
    let pruned = try ScratchBuffer<Double>(count: total)
    let g = try ScratchBuffer<Double>(count: total)
    let keep = try ScratchBuffer<UInt8>(count: total)
    let workers = resolveThreads(options.threads, work: rows)
    let scratch = try ScratchBuffer<Double>(count: workers * cols)
    defer { keepAlive(w, pruned, g, keep, scratch) }
    parallelFor(workers: workers) { worker in
        for r in partition(rows, workers: workers, worker: worker) {
            let row = w.base + r * cols
            Double.load(weights, row: r, from: 0, count: cols, into: row, scratch: scratch.base + worker * cols)
            for j in 0..<cols {
                keep.base[r * cols + j] = mask[r * cols + j]
                pruned.base[r * cols + j] = mask[r * cols + j] == 0 ? row[j] : 0
            }
        }
    }
    // G = D H (D: the pruned weights), one GEMM.
    Double.gemm(m: rows, n: cols, k: cols, alpha: 1, a: pruned.base, lda: cols, b: hessian, ldb: cols, beta: 0,
                c: g.base, ldc: cols)
    var swaps = [Int](repeating: 0, count: rows)
    swaps.withUnsafeMutableBufferPointer { made in
        parallelFor(workers: workers) { worker in
            var search = SwapSearch(cols: cols, candidates: options.candidates)
            for r in partition(rows, workers: workers, worker: worker) {
                made[r] = search.refine(row: w.base + r * cols, g: g.base + r * cols, keep: keep.base + r * cols,
                                        pruned: pruned.base + r * cols, hessian: hessian, cols: cols, options: options)
            }
        }
    }
    mask.update(from: keep.base, count: total)
    return swaps.reduce(0, +)
}

/// One worker's search state (candidate lists reused across rows).
struct SwapSearch {
    var cheapest: [(cost: Double, index: Int)]
    var best: [(gain: Double, index: Int)]
    let candidates: Int

    init(cols: Int, candidates: Int) {
        self.candidates = candidates
        cheapest = []
        best = []
        cheapest.reserveCapacity(candidates + 1)
        best.reserveCapacity(candidates + 1)
    }

    mutating func refine(row w: UnsafePointer<Double>, g: UnsafeMutablePointer<Double>, keep: UnsafeMutablePointer<UInt8>,
                         pruned d: UnsafePointer<Double>, hessian h: UnsafePointer<Double>, cols: Int,
                         options: SwapOptions) -> Int {
        // The row's error d H d^T, to judge what counts as a decrease.
        var error = 0.0
        for j in 0..<cols where keep[j] == 0 { error += d[j] * g[j] }
        var made = 0
        while made < options.maxSwaps {
            guard let (i, j, delta) = bestSwap(w, g, keep, h, cols, options.pattern) else { break }
            // A decrease that is not lost in the rounding of the error itself.
            guard delta < -1e-12 * max(error, 0) - Double.leastNormalMagnitude else { break }
            keep[i] = 0
            keep[j] = 1
            let wi = w[i], wj = w[j], hi = h + i * cols, hj = h + j * cols
            for c in 0..<cols { g[c] += wi * hi[c] - wj * hj[c] }
            error += delta
            made += 1
        }
        return made
    }

    /// The best evaluated (prune i, keep j, change in error), ties by (i, j).
    mutating func bestSwap(_ w: UnsafePointer<Double>, _ g: UnsafePointer<Double>, _ keep: UnsafePointer<UInt8>,
                           _ h: UnsafePointer<Double>, _ cols: Int, _ pattern: SwapOptions.Pattern) -> (Int, Int, Double)? {
        var found: (Int, Int, Double)? = nil
        func consider(_ i: Int, _ j: Int, cost: Double, gain: Double) {
            let delta = cost - gain - 2 * w[i] * w[j] * h[i * cols + j]
            if let f = found, !(delta < f.2 || (delta == f.2 && (i, j) < (f.0, f.1))) { return }
            found = (i, j, delta)
        }
        @inline(__always) func cost(_ i: Int) -> Double { 2 * w[i] * g[i] + w[i] * w[i] * h[i * cols + i] }
        @inline(__always) func gain(_ j: Int) -> Double { 2 * w[j] * g[j] - w[j] * w[j] * h[j * cols + j] }
        switch pattern {
        case .nm(_, let m):
            for start in stride(from: 0, to: cols, by: m) {
                for i in start..<(start + m) where keep[i] != 0 {
                    let c = cost(i)
                    for j in start..<(start + m) where keep[j] == 0 { consider(i, j, cost: c, gain: gain(j)) }
                }
            }
        case .row:
            cheapest.removeAll(keepingCapacity: true)
            best.removeAll(keepingCapacity: true)
            for c in 0..<cols {
                if keep[c] != 0 {
                    insert(&cheapest, (cost(c), c), limit: candidates) { ($0.0, $0.1) < ($1.0, $1.1) }
                } else {
                    // Larger gain first: rank by (-gain, index).
                    insert(&best, (gain(c), c), limit: candidates) { (-$0.0, $0.1) < (-$1.0, $1.1) }
                }
            }
            for (c, i) in cheapest { for (a, j) in best { consider(i, j, cost: c, gain: a) } }
        }
        return found
    }

    /// Keeps `list` the `limit` first by `before`, sorted.
    @inline(__always)
    private func insert<E>(_ list: inout [E], _ e: E, limit: Int, _ before: (E, E) -> Bool) {
        if list.count == limit, let last = list.last, !before(e, last) { return }
        var p = list.count
        while p > 0, before(e, list[p - 1]) { p -= 1 }
        list.insert(e, at: p)
        if list.count > limit { list.removeLast() }
    }
}
