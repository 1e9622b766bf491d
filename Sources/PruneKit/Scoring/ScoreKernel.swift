/// One layer's weights with a checked criterion: computes float32 scores row by row.
struct ScoreKernel {
    enum Kind {
        case magnitude
        case random(UInt64)
        case scaled(UnsafePointer<Float>)
        case taylor(MatrixView)
        case scores
    }

    let weights: MatrixView
    let kind: Kind
    /// For messages: "" for a single matrix, "layer 3: " in a list.
    let label: String

    /// Checks the criterion against the weights: shapes, feature values finite and >= 0.
    init(weights: MatrixView, criterion: CriterionView, label: String = "") throws(PruneKitError) {
        self.weights = weights
        self.label = label
        switch criterion {
        case .magnitude: kind = .magnitude
        case .random(let seed): kind = .random(seed)
        case .scores: kind = .scores
        case .wanda(let values), .stade(let values):
            guard let base = values.baseAddress else {
                throw PruneKitError(.nullPointer, "\(label)\(criterion.name) needs feature values")
            }
            guard values.count == weights.cols else {
                throw .invalidShape(
                    "\(label)\(criterion.name) feature values have length \(values.count), weights have \(weights.cols) columns")
            }
            for j in 0..<values.count where !(values[j] >= 0 && values[j].isFinite) {
                if values[j].isFinite {
                    throw .invalidArgument("\(label)feature value at index \(j) is negative (\(values[j]))")
                }
                throw .nonFinite("\(label)feature value at index \(j) is \(values[j])")
            }
            kind = .scaled(base)
        case .taylor(let gradient):
            guard gradient.rows == weights.rows, gradient.cols == weights.cols else {
                throw .invalidShape(
                    "\(label)gradient is \(gradient.rows) x \(gradient.cols), weights are \(weights.rows) x \(weights.cols)")
            }
            kind = .taylor(gradient)
        }
    }

    var rows: Int { weights.rows }
    var cols: Int { weights.cols }

    /// Scores of `row`, columns `start ..< start + count`, into `out`. `scratch` holds 2 * count
    /// floats. Returns UInt32.max if a value that must be finite (the scores, and the weights for
    /// random scores) is not, else 0; callers test `>= 0x7F800000`.
    @inline(__always)
    func score(row: Int, from start: Int = 0, count: Int, into out: UnsafeMutablePointer<Float>,
               scratch: UnsafeMutablePointer<Float>) -> UInt32 {
        forEachScore(row: row, from: start, count: count, scratch: scratch) { j, s in out[j] = s }
    }

    /// Scores, their order keys, and the key range of a row in one pass.
    @inline(__always)
    func scoresAndKeys(row: Int, count: Int, scores: UnsafeMutablePointer<Float>, keys: UnsafeMutablePointer<UInt32>,
                       scratch: UnsafeMutablePointer<Float>) -> (worst: UInt32, lowest: UInt32, highest: UInt32) {
        var lowest = UInt32.max, highest: UInt32 = 0
        let worst = forEachScore(row: row, count: count, scratch: scratch) { j, s in
            scores[j] = s
            let key = orderKey(s)
            keys[j] = key
            lowest = min(lowest, key)
            highest = max(highest, key)
        }
        return (worst, lowest, highest)
    }

    /// True for criteria whose scores are never below zero (magnitude, Wanda, STADE, Taylor):
    /// the bit patterns of such scores (as +0 for zero) order as the scores do, so selection can
    /// use them as keys directly (`nonnegativeScores`).
    var scoresAreNonnegative: Bool {
        switch kind {
        case .magnitude, .scaled, .taylor: true
        case .random, .scores: false
        }
    }

    /// For a `scoresAreNonnegative` criterion: the scores of `row` into `out` (zero as +0, so
    /// they equal `score`'s up to the sign of zero), the smallest and largest of their bit
    /// patterns, and the finiteness word described at `score`. One pass in explicit 8-lane
    /// float vectors: the range is a float minimum and maximum, which baseline x86-64 SIMD has
    /// (its integer min/max is signed 16-bit only).
    @inline(__always)
    func nonnegativeScores(row: Int, count: Int, into out: UnsafeMutablePointer<Float>,
                           scratch: UnsafeMutablePointer<Float>) -> (worst: UInt32, lowest: UInt32, highest: UInt32) {
        let w = UnsafeRawPointer(weights.floats(row: row, count: count, scratch: scratch))
        // Each score is |w * factor|: the factor is 1 for magnitude (read from one 8-lane
        // constant, a stride of 0 bytes), the feature value, or the gradient.
        switch kind {
        case .magnitude:
            return withUnsafeBytes(of: V8(repeating: 1)) { ones in
                nonnegativeRange(count: count, into: out, weights: w, factors: ones.baseAddress!, factorStride: 0)
            }
        case .scaled(let features):
            return nonnegativeRange(count: count, into: out, weights: w, factors: UnsafeRawPointer(features), factorStride: 4)
        case .taylor(let gradient):
            let g = UnsafeRawPointer(gradient.floats(row: row, count: count, scratch: scratch + count))
            return nonnegativeRange(count: count, into: out, weights: w, factors: g, factorStride: 4)
        case .random, .scores:
            preconditionFailure("nonnegativeScores on a criterion with signed scores")
        }
    }

    typealias V8 = SIMD8<Float>

    /// Stores |weights[j] * factors[j * factorStride / 4]| for j in 0..<count, tracking the range
    /// and the finiteness word. |a * b| equals |a| * |b| for every finite value; the absolute
    /// value is taken last so that zero is always +0.
    @inline(__always)
    private func nonnegativeRange(count: Int, into out: UnsafeMutablePointer<Float>, weights w: UnsafeRawPointer,
                                  factors: UnsafeRawPointer, factorStride: Int) -> (worst: UInt32, lowest: UInt32, highest: UInt32) {
        let signless = SIMD8<UInt32>(repeating: 0x7FFF_FFFF)
        let exponent = SIMD8<UInt32>(repeating: 0x7F80_0000), carry = SIMD8<UInt32>(repeating: 0x0080_0000)
        var low = V8(repeating: .infinity), high = V8(repeating: 0)
        var flags = SIMD8<UInt32>(repeating: 0)
        let store = UnsafeMutableRawPointer(out)
        var j = 0
        while j + 8 <= count {
            let product = w.loadUnaligned(fromByteOffset: 4 * j, as: V8.self)
                * factors.loadUnaligned(fromByteOffset: factorStride * j, as: V8.self)
            let bits = unsafeBitCast(product, to: SIMD8<UInt32>.self) & signless
            let s = unsafeBitCast(bits, to: V8.self)
            store.storeBytes(of: s, toByteOffset: 4 * j, as: V8.self)
            low = low.replacing(with: s, where: s .< low)
            high = high.replacing(with: s, where: s .> high)
            flags |= (bits & exponent) &+ carry
            j += 8
        }
        var lowest = low.min(), highest = high.max()
        var flag = flags[0] | flags[1] | flags[2] | flags[3] | flags[4] | flags[5] | flags[6] | flags[7]
        while j < count {
            let s = abs(w.load(fromByteOffset: 4 * j, as: Float.self)
                * factors.load(fromByteOffset: factorStride == 0 ? 0 : 4 * j, as: Float.self))
            out[j] = s
            lowest = Swift.min(lowest, s)
            highest = Swift.max(highest, s)
            flag |= nonFiniteFlag(s.bitPattern)
            j += 1
        }
        return (flag & 0x8000_0000 != 0 ? UInt32.max : 0, lowest.bitPattern, highest.bitPattern)
    }

    /// Calls `body(j, score)` for columns `start ..< start + count` of `row` (j from 0), one
    /// loop per criterion so each vectorizes; returns the finiteness word described at `score`.
    @inline(__always)
    func forEachScore(row: Int, from start: Int = 0, count: Int, scratch: UnsafeMutablePointer<Float>,
                      _ body: (Int, Float) -> Void) -> UInt32 {
        let w = weights.floats(row: row, from: start, count: count, scratch: scratch)
        var flags: UInt32 = 0
        switch kind {
        case .magnitude:
            for j in 0..<count {
                let s = abs(w[j])
                body(j, s)
                flags |= nonFiniteFlag(s.bitPattern)
            }
        case .scaled(let features):
            let f = features + start
            for j in 0..<count {
                let s = abs(w[j]) * f[j]
                body(j, s)
                flags |= nonFiniteFlag(s.bitPattern)
            }
        case .taylor(let gradient):
            let g = gradient.floats(row: row, from: start, count: count, scratch: scratch + count)
            for j in 0..<count {
                let s = abs(w[j] * g[j])
                body(j, s)
                flags |= nonFiniteFlag(s.bitPattern)
            }
        case .scores:
            for j in 0..<count {
                let s = w[j]
                body(j, s)
                flags |= nonFiniteFlag(s.bitPattern)
            }
        case .random(let seed):
            let first = UInt64(row) &* UInt64(cols) &+ UInt64(start)
            for j in 0..<count {
                flags |= nonFiniteFlag(w[j].bitPattern)
                body(j, randomScore(seed: seed, position: first &+ UInt64(j)))
            }
        }
        return flags & 0x8000_0000 != 0 ? UInt32.max : 0
    }

    /// The error for the first non-finite value of `row` (call after `score` reported one).
    func nonFiniteError(row: Int, scratch: UnsafeMutablePointer<Float>, scores: UnsafeMutablePointer<Float>) -> PruneKitError {
        _ = score(row: row, count: cols, into: scores, scratch: scratch)
        for col in 0..<cols {
            let weight = weights.value(row: row, col: col)
            if !weight.isFinite {
                return .nonFinite("\(label)weight at row \(row), column \(col) is \(weight)")
            }
            if !Float(weight).isFinite {
                return .nonFinite("\(label)weight at row \(row), column \(col) (\(weight)) overflows float32")
            }
            if case .taylor(let gradient) = kind {
                let g = gradient.value(row: row, col: col)
                if !Float(g).isFinite {
                    return .nonFinite("\(label)gradient at row \(row), column \(col) is \(g)")
                }
            }
            if case .random = kind { continue }
            if !scores[col].isFinite {
                return .nonFinite("\(label)score at row \(row), column \(col) overflows float32 (weight \(weight))")
            }
        }
        return PruneKitError(.internal, "\(label)row \(row) was reported non-finite but no value is")
    }
}

/// Bit 31 of the result is set iff `bits` is a float32 infinity or NaN (its exponent, all ones,
/// carries into bit 31). OR-ing these over a row is cheap in SIMD where an unsigned maximum
/// (baseline x86-64 has none) is not.
@inline(__always)
func nonFiniteFlag(_ bits: UInt32) -> UInt32 {
    (bits & 0x7F80_0000) &+ 0x0080_0000
}
