/// Pruning at inference time, for a serving loop: per-sample channel gating (Fire Together Wire
/// Together) and importance-aware randomised channel masks (MACPruning). These functions run on
/// the calling thread, allocate nothing (no scratch, no threads) and keep nothing, so many
/// threads may call them at once on their own outputs.

/// The top `k` channels of every sample: for row t of `scores` (samples x channels, float32),
/// the channels that the library's ranking keeps when it prunes channels - k: ranked by
/// (score, channel) ascending, the first channels - k go, so among equal scores the higher
/// channel stays. With `magnitude` the score is |value| (activations as their own gate).
/// Writes row t's k channels in increasing order to `indices[t * k ..< (t + 1) * k]`, only after
/// every score was checked. The C function is `pk_top_channels`.
/// - Throws: `.unsupportedDType` (not float32), `.invalidArgument` (k outside 1 ... channels),
///   `.invalidShape` (2^32 channels or more), `.nonFinite` (names the first bad sample and channel).
package func topChannels(scores: MatrixView, k: Int, magnitude: Bool, indices: UnsafeMutablePointer<Int64>) throws(PruneKitError) {
    guard scores.dtype == .float32 else {
        throw PruneKitError(.unsupportedDType, "gate scores must be float32, got \(scores.dtype)")
    }
    let n = scores.cols
    guard n < 1 << 32 else { throw .invalidShape("\(n) channels: at most 2^32 - 1") }
    guard k >= 1, k <= n else { throw .invalidArgument("k must be in 1 ... \(n) (the channels), got \(k)") }
    for t in 0..<scores.rows {
        let row = scores.rowAddress(t).assumingMemoryBound(to: Float.self)
        guard Float.allFinite(row, count: n) else {
            let c = (0..<n).first { !row[$0].isFinite } ?? 0
            throw .nonFinite("gate score at sample \(t), channel \(c) is \(row[c])")
        }
    }
    // A 256-bin histogram in a local value, so on the stack (withUnsafeTemporaryAllocation of
    // 1 KiB went to malloc): the radix selection below needs nothing else.
    var bins = (SIMD64<UInt32>(), SIMD64<UInt32>(), SIMD64<UInt32>(), SIMD64<UInt32>())
    withUnsafeMutableBytes(of: &bins) { raw in
        let histogram = raw.bindMemory(to: UInt32.self).baseAddress!
        for t in 0..<scores.rows {
            selectTop(scores.rowAddress(t).assumingMemoryBound(to: Float.self), n: n, k: k, magnitude: magnitude,
                      histogram: histogram, into: indices + t * k)
        }
    }
}

/// Row `row`'s top k: the channels - k lowest by (key, channel) go. Radix selection of the key of
/// rank channels - k on the order keys, most significant byte first (four counting passes, no
/// sort), then one pass writing the kept channels in increasing order: every key above it, and of
/// the keys equal to it the ones after the pruned ties (higher channels stay).
@inline(__always)
private func selectTop(_ row: UnsafePointer<Float>, n: Int, k: Int, magnitude: Bool, histogram: UnsafeMutablePointer<UInt32>,
                       into out: UnsafeMutablePointer<Int64>) {
    @inline(__always) func key(_ c: Int) -> UInt32 { orderKey(magnitude ? abs(row[c]) : row[c]) }
    let prune = n - k
    if prune == 0 {
        for c in 0..<n { out[c] = Int64(c) }
        return
    }
    var prefix: UInt32 = 0, known: UInt32 = 0, below = 0  // counts < 2^32
    for shift in stride(from: 24, through: 0, by: -8) {
        histogram.initialize(repeating: 0, count: 256)
        for c in 0..<n {
            let kc = key(c)
            if kc & known == prefix { histogram[Int((kc >> UInt32(shift)) & 0xFF)] += 1 }
        }
        let (digit, lower) = RadixSelection.bucket(histogram, digits: 256, rank: prune - below)
        below += lower
        prefix |= UInt32(digit) << UInt32(shift)
        known |= 0xFF << UInt32(shift)
    }
    // `below` keys are under the threshold `prefix`; the first prune - below equal to it go too.
    let tiesPruned = prune - below
    var tie = 0, written = 0
    for c in 0..<n {
        let kc = key(c)
        var keep = kc > prefix
        if kc == prefix {
            keep = tie >= tiesPruned
            tie += 1
        }
        if keep {
            out[written] = Int64(c)
            written += 1
        }
    }
}

/// Which way `gather` picks.
public enum GatherAxis: Int32, Sendable {
    case rows = 0   // PK_AXIS_ROWS
    case cols = 1   // PK_AXIS_COLS
}

/// Gathers the rows (`axis == .rows`) or columns (`.cols`) `indices[0 ..< count]` (any order,
/// repeats allowed) of `source` into `output` (count x cols or rows x count, the same dtype):
/// the dense sub-matrix of the next layer's weights for a gated sample's smaller GEMM. Writes only
/// after every index was checked. The C function is `pk_gather`.
/// - Throws: `.invalidArgument` (an index out of range), `.invalidShape` (an output
///   of another shape), `.unsupportedDType` (an output of another dtype).
package func gather(_ source: MatrixView, axis: GatherAxis, indices: UnsafePointer<Int64>, count: Int,
                   into output: MatrixView) throws(PruneKitError) {
    let extent: Int
    switch axis {
    case .rows:
        extent = source.rows
        guard output.rows == count, output.cols == source.cols else {
            throw .invalidShape("output is \(output.rows) x \(output.cols), \(count) x \(source.cols) gathered rows need the same")
        }
    case .cols:
        extent = source.cols
        guard output.rows == source.rows, output.cols == count else {
            throw .invalidShape("output is \(output.rows) x \(output.cols), \(source.rows) x \(count) gathered columns need the same")
        }
    }
    guard output.dtype == source.dtype else {
        throw PruneKitError(.unsupportedDType, "output is \(output.dtype), the source \(source.dtype)")
    }
    for i in 0..<count where indices[i] < 0 || indices[i] >= Int64(extent) {
        throw .invalidArgument("indices[\(i)] = \(indices[i]) is outside 0 ..< \(extent)")
    }
    let size = source.dtype.size
    switch axis {
    case .rows:
        for i in 0..<count {
            output.rowAddress(i).copyMemory(from: source.rowAddress(Int(indices[i])), byteCount: source.cols * size)
        }
    case .cols:
        for r in 0..<source.rows {
            let from = source.rowAddress(r), to = output.rowAddress(r)
            switch size {
            case 4:
                let f = from.assumingMemoryBound(to: UInt32.self), t = to.assumingMemoryBound(to: UInt32.self)
                for i in 0..<count { t[i] = f[Int(indices[i])] }
            case 8:
                let f = from.assumingMemoryBound(to: UInt64.self), t = to.assumingMemoryBound(to: UInt64.self)
                for i in 0..<count { t[i] = f[Int(indices[i])] }
            default:
                let f = from.assumingMemoryBound(to: UInt16.self), t = to.assumingMemoryBound(to: UInt16.self)
                for i in 0..<count { t[i] = f[Int(indices[i])] }
            }
        }
    }
}

/// MACPruning's importance-aware random mask: channel c is kept when importance[c] >= threshold,
/// and otherwise dropped (mask 0) when its draw u_c < dropProbability, where u_c is the
/// documented random score of PK_CRITERION_RANDOM at position c (`randomScore(seed:position:)`),
/// so a seed reproduces a mask in every language. Use a new seed for every call (a per-call
/// counter added to a secret base) for a fresh mask. The C function is `pk_random_channel_mask`.
/// - Throws: `.invalidArgument` (a probability outside [0, 1], a NaN threshold), `.nonFinite`.
package func randomChannelMask(importance: UnsafePointer<Float>, count: Int, threshold: Double, dropProbability: Double,
                              seed: UInt64, mask: UnsafeMutablePointer<UInt8>) throws(PruneKitError) {
    guard count > 0 else { throw .invalidShape("count must be positive, got \(count)") }
    guard dropProbability >= 0, dropProbability <= 1 else {
        throw .invalidArgument("drop probability must be in [0, 1], got \(dropProbability)")
    }
    guard !threshold.isNaN else { throw .invalidArgument("threshold is NaN") }
    guard Float.allFinite(importance, count: count) else {
        let c = (0..<count).first { !importance[$0].isFinite } ?? 0
        throw .nonFinite("importance at channel \(c) is \(importance[c])")
    }
    for c in 0..<count {
        let important = Double(importance[c]) >= threshold
        mask[c] = important || Double(randomScore(seed: seed, position: UInt64(c))) >= dropProbability ? 1 : 0
    }
}

// MARK: - Owned arrays (these allocate their results; the view functions above do not)

/// The top `k` channels of every row of `scores`, `scores.rows * k` channel indices (row t's in
/// increasing order at t * k).
public func topChannels(_ scores: Matrix<Float>, k: Int, magnitude: Bool = false) throws(PruneKitError) -> [Int64] {
    guard k >= 1, k <= scores.cols else { throw .invalidArgument("k must be in 1 ... \(scores.cols) (the channels), got \(k)") }
    var indices = [Int64](repeating: 0, count: scores.rows * k)
    try indices.withUnsafeMutableBufferPointer { out throws(PruneKitError) in
        try scores.withMatrixView { view throws(PruneKitError) in
            try topChannels(scores: view, k: k, magnitude: magnitude, indices: out.baseAddress!)
        }
    }
    return indices
}

/// Rows or columns `indices` of `source` as a new matrix.
public func gather<S>(_ source: Matrix<S>, axis: GatherAxis, indices: [Int64]) throws(PruneKitError) -> Matrix<S> {
    guard !indices.isEmpty else { throw .invalidShape("indices is empty") }
    let (rows, cols) = axis == .rows ? (indices.count, source.cols) : (source.rows, indices.count)
    var output = try Matrix<S>(rows: rows, cols: cols, values: .init(repeating: S(0), count: rows * cols))
    try indices.withUnsafeBufferPointer { idx throws(PruneKitError) in
        try source.withMatrixView { view throws(PruneKitError) in
            try output.withMutableMatrixView { out throws(PruneKitError) in
                try gather(view, axis: axis, indices: idx.baseAddress!, count: idx.count, into: out)
            }
        }
    }
    return output
}

/// MACPruning's mask of `importance.count` channels, true = keep.
public func randomChannelMask(importance: [Float], threshold: Double, dropProbability: Double,
                              seed: UInt64) throws(PruneKitError) -> [Bool] {
    var mask = [UInt8](repeating: 0, count: importance.count)
    try importance.withUnsafeBufferPointer { imp throws(PruneKitError) in
        try mask.withUnsafeMutableBufferPointer { out throws(PruneKitError) in
            guard let base = imp.baseAddress else { throw .invalidShape("count must be positive, got 0") }
            try randomChannelMask(importance: base, count: imp.count, threshold: threshold, dropProbability: dropProbability,
                                  seed: seed, mask: out.baseAddress!)
        }
    }
    return mask.map { $0 != 0 }
}
