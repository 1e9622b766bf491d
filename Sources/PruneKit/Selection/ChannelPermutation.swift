/// Channel permutations for N:M sparsity (Pool and Yu 2021, "Channel Permutations for N:M
/// Sparsity"; NVIDIA ASP's permutation search; RIA 2024's channel permutation).
///
/// An N:M mask keeps the n best of every m consecutive input columns, so which columns share a
/// group decides how much importance the mask can keep. Reordering a layer's input channels is
/// free when the producing layer's output rows (and bias) are reordered the same way: the network
/// computes the same function. The search looks for the order under which the N:M mask keeps the
/// most importance (the sum over rows and groups of the n largest scores), by greedy channel
/// swaps between groups:
///
/// - for every pair of groups (a, b) the best exchange of one column of a with one column of b,
///   and its exact gain, are kept in a table;
/// - each pass sorts the pairs with a positive gain (largest first, ties by (a, b)) and makes
///   their swaps in that order, skipping pairs that share a group with a swap made earlier in the
///   pass (their gains are stale), then recomputes the table entries of the groups it touched;
/// - the search stops when no pair gains, after `maxSwaps` swaps, or at the time limit.
///
/// Gains are exact: with, per row and group, S = the kept sum, and for each member k the kept
/// sum T_k and smallest kept value L_k of the group without k, column k of a trading places with
/// column q of b changes the kept sum of row r by
///     T_k + max(0, s_q - L_k) - S_a  +  T_q + max(0, s_k - L_q) - S_b.
/// The result starts from the identity and only takes gaining swaps, so the permuted mask never
/// keeps less than the unpermuted one. Everything is deterministic: the same permutation for any
/// number of threads (the time limit, when one is set, depends on the machine's speed).
public struct PermutationOptions: Sendable, Equatable {
    /// The pattern the permutation is for: n kept of every m consecutive columns.
    public var n: Int
    public var m: Int
    /// 0: any column may move anywhere; else columns move only inside consecutive runs of
    /// `segment` columns (a multiple of m dividing cols), e.g. within an attention head.
    public var segment: Int
    /// The search's budget: at most this many swaps, in [1, 2^40].
    public var maxSwaps: Int
    /// Seconds; 0 = no time limit. A limit makes the result depend on the machine's speed.
    public var timeLimit: Double
    public var threads: Int

    public init(n: Int = 2, m: Int = 4, segment: Int = 0, maxSwaps: Int = 1 << 20, timeLimit: Double = 0, threads: Int = 0) {
        self.n = n
        self.m = m
        self.segment = segment
        self.maxSwaps = maxSwaps
        self.timeLimit = timeLimit
        self.threads = threads
    }

    func validate(cols: Int) throws(PruneKitError) {
        try checkNM(n, m)
        guard m <= 64 else { throw .invalidArgument("the permutation search takes M up to 64, got \(m)") }
        try checkNM(n, m, cols: cols)
        guard segment >= 0 else { throw .invalidArgument("segment must be 0 (the whole row) or positive, got \(segment)") }
        if segment > 0 {
            guard segment % m == 0, cols % segment == 0 else {
                throw .invalidShape("segment \(segment) must be a multiple of M = \(m) and divide cols = \(cols)")
            }
        }
        guard maxSwaps >= 1, maxSwaps <= 1 << 40 else {
            throw .invalidArgument("the permutation budget max swaps must be in [1, 2^40], got \(maxSwaps)")
        }
        guard timeLimit.isFinite, timeLimit >= 0 else {
            throw .invalidArgument("the time limit must be 0 (none) or positive seconds, got \(timeLimit)")
        }
        try checkThreads(threads)
    }
}

/// What the search found.
public struct ChannelPermutationResult: Sendable, Equatable {
    /// permutation[j] = the original column placed at position j: the permuted weight is
    /// W[:, permutation], the producer's permuted rows are P[permutation, :].
    public var permutation: [Int]
    /// The importance the N:M mask keeps without and with the permutation (float64 sums of the
    /// criterion's float32 scores).
    public var keptBefore: Double
    public var keptAfter: Double
    /// Swaps made.
    public var swaps: Int
}

/// Searches a permutation of the input channels of `weights` under which the N:M mask of the
/// criterion's scores keeps more importance. Nothing is written on error.
/// The C function is `pk_channel_permutation`.
package func channelPermutation(weights: MatrixView, criterion: CriterionView,
                               options: PermutationOptions) throws(PruneKitError) -> ChannelPermutationResult {
    let rows = weights.rows, cols = weights.cols
    try options.validate(cols: cols)
    let kernel = try ScoreKernel(weights: weights, criterion: criterion)
    let total = try checkedProduct(rows, cols, "weights")
    let scores = try ScratchBuffer<Float>(count: total)
    defer { keepAlive(scores) }
    try MaskEngine.scores(kernel: kernel, threads: options.threads, into: scores.base)
    let width = options.segment == 0 ? cols : options.segment
    let segments = cols / width
    let groups = width / options.m
    let workers = resolveThreads(options.threads, work: cols)
    let deadline: ContinuousClock.Instant? = options.timeLimit > 0
        ? ContinuousClock.now + .nanoseconds(Int64(min(options.timeLimit, 1e9) * 1e9)) : nil
    // Searches each segment; many small segments run side by side, one large one shares the
    // workers among its table entries. The budget is per segment for side-by-side searches and
    // whole for a single one, so split it evenly (remainder to the first segments).
    var results = [(perm: [Int], before: Double, after: Double, swaps: Int)](repeating: ([], 0, 0, 0), count: segments)
    let searchWorkers = segments == 1 ? workers : 1
    var searches: [PermutationSearch] = []
    for _ in 0..<(segments == 1 ? 1 : min(workers, segments)) {
        searches.append(try PermutationSearch(rows: rows, groups: groups, n: options.n, m: options.m))
    }
    let sideBySide = searches.count
    results.withUnsafeMutableBufferPointer { out in
        parallelFor(workers: sideBySide) { worker in
            let search = searches[worker]
            for s in partition(segments, workers: sideBySide, worker: worker) {
                let budget = options.maxSwaps / segments + (s < options.maxSwaps % segments ? 1 : 0)
                out[s] = search.run(scores: scores.base + s * width, stride: cols, budget: budget, deadline: deadline,
                                    workers: searchWorkers)
            }
        }
    }
    var permutation: [Int] = []
    permutation.reserveCapacity(cols)
    var before = 0.0, after = 0.0, swaps = 0
    for (s, result) in results.enumerated() {
        permutation.append(contentsOf: result.perm.map { $0 + s * width })
        before += result.before
        after += result.after
        swaps += result.swaps
    }
    return ChannelPermutationResult(permutation: permutation, keptBefore: before, keptAfter: after, swaps: swaps)
}

/// The swap search over one segment: its buffers, reused across segments by one worker.
/// Layout: group a's values at rows r are contiguous, entry (a, r, k) at (a * rows + r) * m + k,
/// so one pass over a pair of groups' rows evaluates all m * m exchanges.
final class PermutationSearch: @unchecked Sendable {
    let rows: Int, groups: Int, n: Int, m: Int
    /// The segment's scores in their current column order.
    let current: ScratchBuffer<Double>
    /// Per group, row and member k: the smallest kept value of the group without k.
    let smallest: ScratchBuffer<Double>
    /// Per column: sum over rows of (kept sum of its group without it - kept sum).
    let loss: ScratchBuffer<Double>
    /// Per group: the kept sum over its rows.
    let keptSum: ScratchBuffer<Double>
    /// Per pair of groups a < b (at a * groups + b): the best swap's gain and its columns.
    let gain: ScratchBuffer<Double>
    let pair: ScratchBuffer<UInt16>

    init(rows: Int, groups: Int, n: Int, m: Int) throws(PruneKitError) {
        self.rows = rows
        self.groups = groups
        self.n = n
        self.m = m
        let entries = try checkedProduct(try checkedProduct(groups, m, "the permutation search"), rows, "the permutation search")
        current = try ScratchBuffer(count: entries)
        smallest = try ScratchBuffer(count: entries)
        loss = try ScratchBuffer(count: groups * m)
        keptSum = try ScratchBuffer(count: groups)
        let pairs = try checkedProduct(groups, groups, "the permutation search's pair table")
        gain = try ScratchBuffer(count: pairs)
        pair = try ScratchBuffer(count: pairs)
    }

    /// Kept sums of group a (and of a without each member) from the current values.
    func summarise(group a: Int) {
        var values = [Double](repeating: 0, count: m)
        var order = [Int](repeating: 0, count: m)
        var rank = [Int](repeating: 0, count: m)
        var lossRow = [Double](repeating: 0, count: m)
        var total = 0.0
        for r in 0..<rows {
            let at = (a * rows + r) * m
            for k in 0..<m { values[k] = current.base[at + k] }
            // Descending by value, ties by position: insertion sort (m is small).
            for k in 0..<m {
                var i = k
                while i > 0, values[order[i - 1]] < values[k] || (values[order[i - 1]] == values[k] && order[i - 1] > k) {
                    order[i] = order[i - 1]
                    i -= 1
                }
                order[i] = k
            }
            for i in 0..<m { rank[order[i]] = i }
            var s = 0.0
            for i in 0..<n { s += values[order[i]] }
            total += s
            let nth = values[order[n]], last = values[order[n - 1]]
            for k in 0..<m {
                if rank[k] < n {
                    lossRow[k] += (s - values[k] + nth) - s
                    smallest.base[at + k] = nth
                } else {
                    smallest.base[at + k] = last
                }
            }
        }
        for k in 0..<m { loss.base[a * m + k] = lossRow[k] }
        keptSum.base[a] = total
    }

    /// The best swap between groups a < b: its gain and (k * 64 + q) for columns a*m+k, b*m+q.
    func bestSwap(_ a: Int, _ b: Int) -> (Double, UInt16) {
        let mm = m * m
        return withUnsafeTemporaryAllocation(of: Double.self, capacity: mm) { acc in
            let acc = acc.baseAddress!
            acc.initialize(repeating: 0, count: mm)
            // Plain compares, not max() / SIMD pointwiseMax (which lower to NaN-aware scalar calls,
            // ten times slower here); the compiler vectorises the q loop.
            for r in 0..<rows {
                let ca = current.base + (a * rows + r) * m, la = smallest.base + (a * rows + r) * m
                let cb = current.base + (b * rows + r) * m, lb = smallest.base + (b * rows + r) * m
                for k in 0..<m {
                    let cak = ca[k], lak = la[k], row = acc + k * m
                    for q in 0..<m {
                        let x = cb[q] - lak, y = cak - lb[q]
                        row[q] += (x > 0 ? x : 0) + (y > 0 ? y : 0)
                    }
                }
            }
            var best = -Double.infinity, where_: UInt16 = 0
            for k in 0..<m {
                for q in 0..<m {
                    let g = acc[k * m + q] + (loss.base[a * m + k] + loss.base[b * m + q])
                    if g > best {
                        best = g
                        where_ = UInt16(k * 64 + q)
                    }
                }
            }
            return (best, where_)
        }
    }

    /// Recomputes the table entries of the listed pairs (a < b), split across workers.
    func refresh(_ pairs: [(Int, Int)], workers: Int) {
        let used = max(1, min(workers, pairs.count))
        parallelFor(workers: used) { worker in
            for i in partition(pairs.count, workers: used, worker: worker) {
                let (a, b) = pairs[i]
                let (g, w) = bestSwap(a, b)
                gain.base[a * groups + b] = g
                pair.base[a * groups + b] = w
            }
        }
    }

    func keptTotal() -> Double {
        var t = 0.0
        for a in 0..<groups { t += keptSum.base[a] }
        return t
    }

    /// Runs the search on the segment whose scores start at `scores` (row stride `stride`).
    func run(scores: UnsafePointer<Float>, stride: Int, budget: Int, deadline: ContinuousClock.Instant?,
             workers: Int) -> (perm: [Int], before: Double, after: Double, swaps: Int) {
        let width = groups * m
        var scale = 0.0
        for a in 0..<groups {
            for r in 0..<rows {
                for k in 0..<m {
                    let v = Double(scores[r * stride + a * m + k])
                    current.base[(a * rows + r) * m + k] = v
                }
            }
        }
        for r in 0..<rows { for c in 0..<width { scale += abs(Double(scores[r * stride + c])) } }
        var perm = Array(0..<width)
        for a in 0..<groups { summarise(group: a) }
        let before = keptTotal()
        // Gains below this are rounding, not improvement (keeps the search from cycling).
        let tolerance = scale * 1e-12
        var all: [(Int, Int)] = []
        for a in 0..<groups { for b in (a + 1)..<groups { all.append((a, b)) } }
        refresh(all, workers: workers)
        var swaps = 0
        var touched = [Bool](repeating: false, count: groups)
        var candidates: [(gain: Double, a: Int, b: Int)] = []
        search: while swaps < budget {
            candidates.removeAll(keepingCapacity: true)
            for (a, b) in all where gain.base[a * groups + b] > tolerance {
                candidates.append((gain.base[a * groups + b], a, b))
            }
            if candidates.isEmpty { break }
            candidates.sort { $0.gain != $1.gain ? $0.gain > $1.gain : ($0.a, $0.b) < ($1.a, $1.b) }
            for i in 0..<groups { touched[i] = false }
            var changed: [Int] = []
            for c in candidates where !touched[c.a] && !touched[c.b] {
                let w = Int(pair.base[c.a * groups + c.b])
                let k = w / 64, q = w % 64
                perm.swapAt(c.a * m + k, c.b * m + q)
                for r in 0..<rows {
                    let x = (c.a * rows + r) * m + k, y = (c.b * rows + r) * m + q
                    let t = current.base[x]
                    current.base[x] = current.base[y]
                    current.base[y] = t
                }
                touched[c.a] = true
                touched[c.b] = true
                changed.append(c.a)
                changed.append(c.b)
                swaps += 1
                if swaps == budget { break }
            }
            for a in changed { summarise(group: a) }
            if swaps == budget { break search }
            var stale: [(Int, Int)] = []
            for a in 0..<groups {
                for b in (a + 1)..<groups where touched[a] || touched[b] { stale.append((a, b)) }
            }
            refresh(stale, workers: workers)
            if let deadline, ContinuousClock.now >= deadline { break }
        }
        return (perm, before, keptTotal(), swaps)
    }
}

/// Permutes the structures of every member of `group` in place: structure j becomes the old
/// structure permutation[j] (rows or columns, span at a time), so a producer's output rows, its
/// bias and the consumer's input columns move together. Members must not share memory. Nothing
/// is written unless the permutation is one of the group's structures and every member is valid.
/// The C function is `pk_permute_group`.
package func permuteStructures(_ group: StructureGroupView, permutation: UnsafeBufferPointer<Int64>) throws(PruneKitError) {
    let n = try group.structureCount(label: "group: ")
    guard permutation.count == n else {
        throw .invalidShape("the permutation has \(permutation.count) entries, the group has \(n) structures")
    }
    var seen = [Bool](repeating: false, count: n)
    for (j, v) in permutation.enumerated() {
        guard v >= 0, v < Int64(n) else { throw .invalidArgument("permutation[\(j)] = \(v) is outside 0...\(n - 1)") }
        guard !seen[Int(v)] else { throw .invalidArgument("permutation[\(j)] = \(v) repeats an earlier entry: not a permutation") }
        seen[Int(v)] = true
    }
    var largest = 0
    for (i, member) in group.members.enumerated() {
        if case .blocks = member.axis { throw .invalidArgument("group member \(i): blocks cannot be permuted") }
        largest = max(largest, try checkedProduct(member.tensor.rows, member.tensor.cols * member.tensor.dtype.size, "member"))
    }
    let copy = try ScratchBuffer<UInt8>(count: largest)
    defer { keepAlive(copy) }
    for member in group.members {
        let t = member.tensor, size = t.dtype.size, rowBytes = t.cols * size
        for r in 0..<t.rows { (copy.base + r * rowBytes).update(from: t.rowAddress(r).assumingMemoryBound(to: UInt8.self), count: rowBytes) }
        switch member.axis {
        case .rows(let span):
            for j in 0..<n {
                let from = Int(permutation[j])
                for e in 0..<span {
                    t.rowAddress(j * span + e).assumingMemoryBound(to: UInt8.self)
                        .update(from: copy.base + (from * span + e) * rowBytes, count: rowBytes)
                }
            }
        case .cols(let span):
            let bytes = span * size
            for r in 0..<t.rows {
                let target = t.rowAddress(r).assumingMemoryBound(to: UInt8.self), source = copy.base + r * rowBytes
                for j in 0..<n { (target + j * bytes).update(from: source + Int(permutation[j]) * bytes, count: bytes) }
            }
        case .blocks:
            break
        }
    }
}

// MARK: - The safe Swift API, over owned matrices

/// Searches a permutation of the input channels of `weights` under which its N:M mask keeps more
/// importance (see `PermutationOptions`).
///
///     let found = try channelPermutation(for: down, criterion: .wanda(featureNorms: norms),
///                                        options: .init(n: 2, m: 4))
///     let up2 = try permuted(up, axis: .rows(span: 1), permutation: found.permutation)
///     let down2 = try permuted(down, axis: .cols(span: 1), permutation: found.permutation)
///
/// - Throws: `PruneKitError` on bad options (a budget of zero, a segment or M not dividing the
///   columns), bad shapes or non-finite scores.
/// The C function is `pk_channel_permutation`.
public func channelPermutation(for weights: some MatrixRepresentable, criterion: Criterion = .magnitude,
                               options: PermutationOptions = .init()) throws(PruneKitError) -> ChannelPermutationResult {
    try weights.withMatrixView { view throws(PruneKitError) in
        try criterion.withView { c throws(PruneKitError) in
            try channelPermutation(weights: view, criterion: c, options: options)
        }
    }
}

/// A copy of `tensor` with its structures along `axis` permuted: structure j is the old
/// structure permutation[j]. The C function is `pk_permute_group` (in place, over every member).
public func permuted<S>(_ tensor: Matrix<S>, axis: StructureAxis, permutation: [Int]) throws(PruneKitError) -> Matrix<S> {
    var out = tensor
    let order = permutation.map { Int64($0) }
    try out.withMutableMatrixView { view throws(PruneKitError) in
        try order.withUnsafeBufferPointer { p throws(PruneKitError) in
            try permuteStructures(StructureGroupView(members: [StructureMemberView(tensor: view, axis: axis)]), permutation: p)
        }
    }
    return out
}
