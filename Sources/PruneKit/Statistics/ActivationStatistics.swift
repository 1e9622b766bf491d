import COpenBLAS
import CPruneKitShims

/// Streaming, mergeable per-feature statistics of calibration activations.
///
/// Make / accumulate / use: create one per layer input, `accumulate` batches of activations
/// [tokens, features] as they stream past (any batch size, any dtype; batches are never kept),
/// `merge` accumulators built on other shards, then read `l2Norm()` (Wanda),
/// `standardDeviation()` (STADE) or `mean()`. Everything is float64. Per feature it keeps the
/// mean and M2 (sum of squared deviations), combined by Chan et al.'s parallel update, so
/// merging shards equals one pass over the concatenated data up to round-off, and the sum of
/// squares.
public struct ActivationStatistics: Sendable, Equatable {
    /// The largest number of features an accumulator takes.
    public static let maxFeatures = 1 << 24
    /// The largest number of features an accumulator with a Gram matrix takes (8 GiB of float64).
    public static let maxGramFeatures = 1 << 15
    /// The largest token count an accumulator holds: 2^53, up to which every count (and every
    /// per-feature zero count) is exact in float64. An update or merge that would pass it is
    /// refused with `.numeric`.
    public static let maxCount = 1 << 53
    /// The largest sum of squares a feature may reach: 2^1000 (about 1.07e301), far enough
    /// below float64's largest value that no later update, merge, mean, M2 or Gram entry can
    /// overflow (they are all bounded by it). An update or merge that would pass it is refused
    /// with `.numeric`: activations up to about 1e150 in magnitude are always accepted.
    public static let maxSumOfSquares: Double = 0x1p1000

    public let features: Int
    /// Tokens seen so far.
    public internal(set) var count: Int
    var means: [Double]
    var m2: [Double]
    var sumSquares: [Double]
    /// Sum of |x| and the number of exact zeros per feature (mean absolute activation and the
    /// zero fraction that structured pruning scores channels by). Empty when restored from bytes
    /// written before they were kept.
    var absSums: [Double]
    var zeroCounts: [Double]
    /// X^T X, features x features row-major, when asked for: the layer Hessian up to scale.
    /// Only the upper triangle is accumulated (OpenBLAS syrk); `gram()` returns it symmetric.
    var gramUpper: [Double]?

    /// Whether the accumulator has the per-feature |x| sums and zero counts (always, unless it was
    /// restored from bytes written without them, or merged with such an accumulator).
    public var keepsActivity: Bool { absSums.count == features }

    /// Whether the accumulator keeps the Gram matrix X^T X.
    public var keepsGram: Bool { gramUpper != nil }

    /// An empty accumulator; with `gram: true` it also keeps X^T X (SparseGPT's Hessian).
    /// - Throws: `.invalidShape` unless 0 < features <= `maxFeatures` (`maxGramFeatures` with
    ///   a Gram matrix).
    /// The C functions are `pk_stats_create` and `pk_stats_create_gram`.
    public init(features: Int, gram: Bool = false) throws(PruneKitError) {
        let limit = gram ? Self.maxGramFeatures : Self.maxFeatures
        guard features > 0, features <= limit else {
            throw .invalidShape("features must be in 1...\(limit)\(gram ? " with a Gram matrix" : ""), got \(features)")
        }
        if gram { gramUpper = Array(repeating: 0, count: features * features) }
        self.features = features
        count = 0
        means = Array(repeating: 0, count: features)
        m2 = Array(repeating: 0, count: features)
        sumSquares = Array(repeating: 0, count: features)
        absSums = Array(repeating: 0, count: features)
        zeroCounts = Array(repeating: 0, count: features)
    }

    /// Refuses (before anything changes) an update or merge that would take the count past
    /// `maxCount` or a feature's sum of squares past `maxSumOfSquares`.
    private func checkGrowth(tokens: Int, sumSquares added: (Int) -> Double, _ what: String) throws(PruneKitError) {
        guard tokens <= Self.maxCount - count else {
            throw PruneKitError(.numeric, "\(what) would take the token count to \(count) + \(tokens), above the 2^53 an accumulator holds")
        }
        for j in 0..<features where !(sumSquares[j] + added(j) <= Self.maxSumOfSquares) {
            throw PruneKitError(.numeric, "\(what) would take the sum of squares of feature \(j) to \(sumSquares[j] + added(j)), "
                + "above the 2^1000 (about 1.07e301) an accumulator holds")
        }
    }

    /// Adds a batch of activations: `batch.rows` tokens of `batch.cols == features` features.
    /// On error the accumulator is unchanged.
    /// - Throws: `.invalidShape` for a feature-count mismatch, `.nonFinite` naming the first
    ///   non-finite activation, `.numeric` when the count would pass `maxCount` or a sum of
    ///   squares `maxSumOfSquares` (e.g. float64 activations of 1e200, whose squares overflow).
    /// The C function is `pk_stats_update`.
    package mutating func accumulate(_ batch: MatrixView) throws(PruneKitError) {
        try accumulate(batch, rows: nil)
    }

    /// Adds the listed rows of a batch, in the listed order (rows may repeat): the same bytes as
    /// accumulating the matrix of those rows, without making it (a padded batch's real tokens).
    /// `nil` adds every row; an empty list adds nothing. On error the accumulator is unchanged.
    /// - Throws: as `accumulate(_:)`, and `.invalidArgument` for a row outside the batch.
    /// The C function is `pk_stats_update_rows`.
    package mutating func accumulate(_ batch: MatrixView, rows selected: UnsafeBufferPointer<Int64>?) throws(PruneKitError) {
        guard batch.cols == features else {
            throw .invalidShape("batch has \(batch.cols) features, the statistics have \(features)")
        }
        if let selected {
            for (i, r) in selected.enumerated() where r < 0 || r >= Int64(batch.rows) {
                throw .invalidArgument("rows[\(i)] is \(r), outside the batch's \(batch.rows) rows")
            }
            if selected.isEmpty { return }
        }
        let order = RowOrder(selected)
        let tokens = selected?.count ?? batch.rows
        let f = features
        let sums = try ScratchBuffer<Double>(repeating: 0, count: f)
        let squares = try ScratchBuffer<Double>(repeating: 0, count: f)
        let absolute = try ScratchBuffer<Double>(repeating: 0, count: f)
        let zeros = try ScratchBuffer<Double>(repeating: 0, count: f)
        let batchMeans = try ScratchBuffer<Double>(repeating: 0, count: f)
        let batchM2 = try ScratchBuffer<Double>(repeating: 0, count: f)
        // Features are independent: large batches split them across threads in runs of eight
        // (the same sums whatever the split).
        let units = (f + 7) / 8
        let workers = tokens * f >= 1 << 17 ? resolveThreads(0, work: units) : 1
        var tiles: [TokenTiles] = []
        for _ in 0..<workers { tiles.append(try TokenTiles(batch, order, tokens: tokens)) }
        let finite = try ScratchBuffer<UInt8>(repeating: 1, count: workers)
        // float32 batches go to the wide kernels as they are (converted as they load), the next
        // tile's rows fetched into cache while one runs.
        let direct = wideKernels && batch.dtype == .float32
        defer { keepAlive(sums, squares, absolute, zeros, batchMeans, batchM2, tiles, finite) }
        // Per tile column (every token of up to 256 features), two passes while it is in cache:
        // the sums, sums of squares, |x| sums and zero counts, then the M2 around the batch mean.
        // Each kernel keeps a few features' accumulators in registers down a tile of tokens; per
        // feature the tokens are still added in order, so the bits are those of a token-by-token loop.
        parallelFor(workers: workers) { worker in
            let reader = tiles[worker], mine = partition(units, workers: workers, worker: worker)
            let end = min(mine.upperBound * 8, f)
            for j0 in stride(from: mine.lowerBound * 8, to: end, by: TokenTiles.features) {
                let width = min(TokenTiles.features, end - j0)
                var ok = true
                for t0 in stride(from: 0, to: tokens, by: TokenTiles.tokens) {
                    if direct {
                        let (rows, nt, ahead, na) = reader.floats(tokens: t0, features: j0, count: width)
                        ok = prunekit_wide_moments_float(rows, nt, width, sums.base + j0, squares.base + j0,
                                                         absolute.base + j0, zeros.base + j0, ahead, na) != 0 && ok
                        continue
                    }
                    let (rows, nt) = reader.load(tokens: t0, features: j0, count: width)
                    if wideKernels {
                        ok = prunekit_wide_moments(UnsafeRawPointer(rows).assumingMemoryBound(to: UnsafePointer<Double>?.self),
                                                   nt, width, sums.base + j0, squares.base + j0, absolute.base + j0,
                                                   zeros.base + j0, nil, 0) != 0 && ok
                    } else {
                        ok = Self.addMoments(rows, nt, width, sums: sums.base + j0, squares: squares.base + j0,
                                             absolute: absolute.base + j0, zeros: zeros.base + j0) && ok
                    }
                }
                if !ok { finite.base[worker] = 0; return }
                for j in j0..<(j0 + width) { batchMeans.base[j] = sums.base[j] / Double(tokens) }
                for t0 in stride(from: 0, to: tokens, by: TokenTiles.tokens) {
                    if direct {
                        let (rows, nt, ahead, na) = reader.floats(tokens: t0, features: j0, count: width)
                        prunekit_wide_deviations_float(rows, nt, width, batchMeans.base + j0, batchM2.base + j0, ahead, na)
                        continue
                    }
                    let (rows, nt) = reader.load(tokens: t0, features: j0, count: width)
                    if wideKernels {
                        prunekit_wide_deviations(UnsafeRawPointer(rows).assumingMemoryBound(to: UnsafePointer<Double>?.self),
                                                 nt, width, batchMeans.base + j0, batchM2.base + j0, nil, 0)
                    } else {
                        Self.addSquaredDeviations(rows, nt, width, means: batchMeans.base + j0, m2: batchM2.base + j0)
                    }
                }
            }
        }
        if (0..<workers).contains(where: { finite.base[$0] == 0 }) {
            for t in 0..<tokens {
                let row = order[t]
                for j in 0..<f where !batch.value(row: row, col: j).isFinite {
                    let at = selected == nil ? "token \(t)" : "token \(t) (batch row \(row))"
                    throw .nonFinite("activation at \(at), feature \(j) is \(batch.value(row: row, col: j))")
                }
            }
        }
        try checkGrowth(tokens: tokens, sumSquares: { squares.base[$0] }, "the batch")
        if gramUpper != nil { accumulateGram(batch, order, tokens: tokens) }
        combine(count: tokens, means: batchMeans.base, m2: batchM2.base, sumSquares: squares.base)
        if keepsActivity {
            for j in 0..<f {
                absSums[j] += absolute.base[j]
                zeroCounts[j] += zeros.base[j]
            }
        }
    }

    /// A tile's rows (features j0..<j0+nf of tokens t0..<t0+nt) into the per-feature sums, sums
    /// of squares, sums of |x| and zero counts (pointers at j0). Four features at a time, their
    /// accumulators in registers down the tile's tokens, each feature's tokens added in order.
    /// False when the tile holds a non-finite value (the sums are then scratch).
    static func addMoments(_ rows: UnsafePointer<UnsafePointer<Double>>, _ nt: Int, _ nf: Int,
                           sums: UnsafeMutablePointer<Double>, squares: UnsafeMutablePointer<Double>,
                           absolute: UnsafeMutablePointer<Double>, zeros: UnsafeMutablePointer<Double>) -> Bool {
        typealias V = SIMD4<Double>
        let zero = V(repeating: 0), one = V(repeating: 1)
        var bad = SIMDMask<SIMD4<Int64>>(repeating: false)
        var j = 0
        while j + 4 <= nf {
            var s = UnsafeRawPointer(sums + j).loadUnaligned(as: V.self)
            var q = UnsafeRawPointer(squares + j).loadUnaligned(as: V.self)
            var a = UnsafeRawPointer(absolute + j).loadUnaligned(as: V.self)
            var z = UnsafeRawPointer(zeros + j).loadUnaligned(as: V.self)
            for r in 0..<nt {
                let v = UnsafeRawPointer(rows[r] + j).loadUnaligned(as: V.self)
                s += v
                q += v * v
                a += v.replacing(with: -v, where: v .< zero)
                z += zero.replacing(with: one, where: v .== zero)
                bad .|= (v - v) .!= zero        // NaN exactly where v is infinite or NaN
            }
            UnsafeMutableRawPointer(sums + j).storeBytes(of: s, as: V.self)
            UnsafeMutableRawPointer(squares + j).storeBytes(of: q, as: V.self)
            UnsafeMutableRawPointer(absolute + j).storeBytes(of: a, as: V.self)
            UnsafeMutableRawPointer(zeros + j).storeBytes(of: z, as: V.self)
            j += 4
        }
        var finite = !any(bad)
        while j < nf {
            for r in 0..<nt {
                let v = rows[r][j]
                sums[j] += v
                squares[j] += v * v
                absolute[j] += Swift.abs(v)
                zeros[j] += v == 0 ? 1 : 0
                finite = finite && v.isFinite
            }
            j += 1
        }
        return finite
    }

    /// m2 += (x - means)^2 over a tile (pointers at its first feature), each feature's tokens in order.
    static func addSquaredDeviations(_ rows: UnsafePointer<UnsafePointer<Double>>, _ nt: Int, _ nf: Int,
                                     means: UnsafePointer<Double>, m2: UnsafeMutablePointer<Double>) {
        typealias V = SIMD4<Double>
        var j = 0
        while j + 4 <= nf {
            let mean = UnsafeRawPointer(means + j).loadUnaligned(as: V.self)
            var acc = UnsafeRawPointer(m2 + j).loadUnaligned(as: V.self)
            for r in 0..<nt {
                let d = UnsafeRawPointer(rows[r] + j).loadUnaligned(as: V.self) - mean
                acc += d * d
            }
            UnsafeMutableRawPointer(m2 + j).storeBytes(of: acc, as: V.self)
            j += 4
        }
        while j < nf {
            for r in 0..<nt {
                let d = rows[r][j] - means[j]
                m2[j] += d * d
            }
            j += 1
        }
    }

    /// gram += X^T X for a validated batch, in float64, chunks of up to 256 tokens through syrk.
    private mutating func accumulateGram(_ batch: MatrixView, _ order: RowOrder, tokens: Int) {
        let f = features
        let chunk = min(tokens, 256)
        var rows = [Double](repeating: 0, count: chunk * f)
        rows.withUnsafeMutableBufferPointer { a in
            gramUpper!.withUnsafeMutableBufferPointer { g in
                var t = 0
                while t < tokens {
                    let count = min(chunk, tokens - t)
                    for i in 0..<count {
                        let source = batch.doubles(row: order[t + i], count: f, scratch: a.baseAddress! + i * f)
                        if source != UnsafePointer(a.baseAddress! + i * f) {
                            (a.baseAddress! + i * f).update(from: source, count: f)
                        }
                    }
                    cblas_dsyrk(CblasRowMajor, CblasUpper, CblasTrans, Int32(f), Int32(count), 1.0,
                                a.baseAddress!, Int32(f), 1.0, g.baseAddress!, Int32(f))
                    t += count
                }
            }
        }
    }

    /// X^T X over every token seen, features x features row-major (symmetric).
    /// - Throws: `.invalidArgument` if the accumulator was made without a Gram matrix.
    /// The C function is `pk_stats_gram`.
    public func gram() throws(PruneKitError) -> [Double] {
        guard var g = gramUpper else {
            throw .invalidArgument("these statistics keep no Gram matrix (create them with gram: true)")
        }
        let f = features
        for i in 0..<f { for j in 0..<i { g[i * f + j] = g[j * f + i] } }
        return g
    }

    /// The centred Gram matrix sum over tokens of (x - mean)(x - mean)^T = X^T X - count mean mean^T,
    /// its diagonal the exact M2: the Hessian of the reconstruction whose mean output shift a bias
    /// absorbs (`compensateBias`).
    /// - Throws: `.invalidArgument` without a Gram matrix or before any token.
    /// The C function is `pk_stats_centered_gram`.
    public func centeredGram() throws(PruneKitError) -> [Double] {
        var g = try gram()
        try requireData()
        let f = features, n = Double(count)
        for i in 0..<f {
            for j in 0..<f { g[i * f + j] -= n * means[i] * means[j] }
            g[i * f + i] = max(0, m2[i])
        }
        return g
    }

    /// Adds a batch held in a `Matrix` (tokens x features).
    public mutating func accumulate(_ batch: some MatrixRepresentable) throws(PruneKitError) {
        var copy = self
        try batch.withMatrixView { view throws(PruneKitError) in try copy.accumulate(view) }
        self = copy
    }

    /// Adds the listed rows of a batch held in a `Matrix`, in order (a padded batch's real tokens):
    /// the same bytes as accumulating a matrix of just those rows. An empty list adds nothing.
    /// - Throws: as `accumulate(_:)`, and `.invalidArgument` for a row outside the batch.
    public mutating func accumulate(_ batch: some MatrixRepresentable, rows: [Int]) throws(PruneKitError) {
        var copy = self
        let list = rows.map(Int64.init)
        try batch.withMatrixView { view throws(PruneKitError) in
            try list.withUnsafeBufferPointer { (p) throws(PruneKitError) in try copy.accumulate(view, rows: p) }
        }
        self = copy
    }

    /// Merges another accumulator (of the same features) into this one, as if this one had
    /// also seen every batch `other` saw. On error the accumulator is unchanged.
    /// - Throws: `.invalidShape`, `.invalidArgument` (one keeps a Gram matrix, the other not),
    ///   `.numeric` when the count would pass `maxCount` or a sum of squares `maxSumOfSquares`.
    /// The C function is `pk_stats_merge`.
    public mutating func merge(_ other: ActivationStatistics) throws(PruneKitError) {
        guard other.features == features else {
            throw .invalidShape("cannot merge statistics of \(other.features) features into \(features)")
        }
        guard other.keepsGram == keepsGram else {
            throw .invalidArgument("cannot merge statistics with and without a Gram matrix")
        }
        try checkGrowth(tokens: other.count, sumSquares: { other.sumSquares[$0] }, "the merge")
        if keepsActivity && other.keepsActivity {
            for j in 0..<features {
                absSums[j] += other.absSums[j]
                zeroCounts[j] += other.zeroCounts[j]
            }
        } else {
            absSums = []
            zeroCounts = []
        }
        if let otherGram = other.gramUpper {
            for i in 0..<otherGram.count { gramUpper![i] += otherGram[i] }
        }
        other.means.withUnsafeBufferPointer { means in
            other.m2.withUnsafeBufferPointer { m2 in
                other.sumSquares.withUnsafeBufferPointer { squares in
                    combine(count: other.count, means: means.baseAddress!, m2: m2.baseAddress!, sumSquares: squares.baseAddress!)
                }
            }
        }
    }

    /// Chan et al.'s combination of (count, mean, M2) pairs, feature by feature.
    private mutating func combine(count nb: Int, means meanB: UnsafePointer<Double>, m2 m2B: UnsafePointer<Double>,
                                  sumSquares squaresB: UnsafePointer<Double>) {
        guard nb > 0 else { return }
        let na = count
        let n = na + nb
        let weightB = Double(nb) / Double(n)
        let cross = Double(na) * Double(nb) / Double(n)
        for j in 0..<features {
            let delta = meanB[j] - means[j]
            means[j] = na == 0 ? meanB[j] : means[j] + delta * weightB
            m2[j] += m2B[j] + delta * delta * cross
            sumSquares[j] += squaresB[j]
        }
        count = n
    }

    /// sqrt(sum over tokens of x^2) per feature: Wanda's feature norm. Zeros when empty.
    /// The C function is `pk_stats_l2_norm`.
    public func l2Norm() -> [Double] { sumSquares.map { $0.squareRoot() } }

    /// The mean per feature.
    /// - Throws: `.invalidArgument` when no token has been seen.
    /// The C function is `pk_stats_mean`.
    public func mean() throws(PruneKitError) -> [Double] {
        try requireData()
        return means
    }

    /// The population variance (M2 / count) per feature.
    /// The C function is `pk_stats_variance`.
    public func variance() throws(PruneKitError) -> [Double] {
        try requireData()
        let n = Double(count)
        return m2.map { max(0, $0) / n }
    }

    /// The population standard deviation per feature: STADE's feature scale.
    /// The C function is `pk_stats_std`.
    public func standardDeviation() throws(PruneKitError) -> [Double] {
        try variance().map { $0.squareRoot() }
    }

    /// The mean |x| per feature (the mean absolute activation of a channel whose outputs these
    /// are).
    /// - Throws: `.invalidArgument` when empty or restored without activity data.
    /// The C function is `pk_stats_mean_abs`.
    public func meanAbsolute() throws(PruneKitError) -> [Double] {
        try requireActivity()
        let n = Double(count)
        return absSums.map { $0 / n }
    }

    /// The fraction of tokens whose value is exactly zero, per feature (APoZ, the average
    /// percentage of zeros, for a channel after its activation function).
    /// The C function is `pk_stats_zero_fraction`.
    public func zeroFraction() throws(PruneKitError) -> [Double] {
        try requireActivity()
        let n = Double(count)
        return zeroCounts.map { $0 / n }
    }

    private func requireActivity() throws(PruneKitError) {
        try requireData()
        guard keepsActivity else {
            throw .invalidArgument("these statistics have no |x| sums and zero counts (restored from bytes written without them, or merged with such statistics)")
        }
    }

    private func requireData() throws(PruneKitError) {
        if count == 0 { throw .invalidArgument("the statistics are empty: no batch has been accumulated") }
    }
}

extension Array where Element == Double {
    /// The values rounded to float32, as the scoring criteria take them.
    public var asFloat32: [Float] { map { Float($0) } }
}

/// The batch rows an update reads, in order: every row, or a caller's list of rows.
struct RowOrder {
    let list: UnsafePointer<Int64>?

    init(_ list: UnsafeBufferPointer<Int64>?) { self.list = list?.baseAddress }

    @inline(__always)
    subscript(_ t: Int) -> Int { list.map { Int($0[t]) } ?? t }
}

/// A batch read in tiles of up to `tokens` x `features` float64 values: pointers to each row's
/// part of the tile, into the batch itself for float64 and into a converted copy otherwise.
/// Token t is the batch's row `order[t]`.
final class TokenTiles {
    static let tokens = 32
    static let features = 256
    let batch: MatrixView
    let order: RowOrder
    let count: Int
    let scratch: ScratchBuffer<Double>
    let rows: ScratchBuffer<UnsafePointer<Double>>
    let floatRows: ScratchBuffer<UnsafePointer<Float>?>
    let aheadRows: ScratchBuffer<UnsafePointer<Float>?>

    init(_ batch: MatrixView, _ order: RowOrder, tokens: Int) throws(PruneKitError) {
        self.batch = batch
        self.order = order
        count = tokens
        // float32 tiles go to the wide kernels as pointers into the batch: no converted copy.
        scratch = try ScratchBuffer<Double>(count: wideKernels && batch.dtype == .float32 ? 0 : Self.tokens * Self.features)
        rows = try ScratchBuffer<UnsafePointer<Double>>(count: Self.tokens)
        floatRows = try ScratchBuffer<UnsafePointer<Float>?>(count: Self.tokens)
        aheadRows = try ScratchBuffer<UnsafePointer<Float>?>(count: Self.tokens)
    }

    /// The tile at (t0, j0) of a float32 batch as pointers into the batch (no copy), its token
    /// count, and the pointers and token count of the tile after it (t0 + tokens, j0; 0 at the end).
    func floats(tokens t0: Int, features j0: Int, count nf: Int)
        -> (UnsafePointer<UnsafePointer<Float>?>, Int, UnsafePointer<UnsafePointer<Float>?>, Int) {
        let nt = min(Self.tokens, count - t0), na = min(Self.tokens, max(0, count - t0 - Self.tokens))
        if t0 == 0 {
            for r in 0..<nt { floatRows.base[r] = address(t0 + r, j0) }
        } else {                      // calls go t0 = 0, 32, ... for one j0: the last look-ahead is this tile
            floatRows.base.update(from: aheadRows.base, count: nt)
        }
        for r in 0..<na { aheadRows.base[r] = address(t0 + Self.tokens + r, j0) }
        return (UnsafePointer(floatRows.base), nt, UnsafePointer(aheadRows.base), na)
    }

    @inline(__always)
    private func address(_ t: Int, _ j0: Int) -> UnsafePointer<Float> {
        UnsafePointer(batch.rowAddress(order[t]).assumingMemoryBound(to: Float.self) + j0)
    }

    /// The tile at (t0, j0), features j0..<j0+nf: its row pointers and token count.
    func load(tokens t0: Int, features j0: Int, count nf: Int) -> (UnsafePointer<UnsafePointer<Double>>, Int) {
        let nt = min(Self.tokens, count - t0)
        for r in 0..<nt {
            rows.base[r] = batch.doubles(row: order[t0 + r], from: j0, count: nf, scratch: scratch.base + r * Self.features)
        }
        return (UnsafePointer(rows.base), nt)
    }
}

