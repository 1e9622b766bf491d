import PruneKit
import Testing

/// A deterministic generator for test data (xorshift*).
struct TestRandom {
    var state: UInt64
    init(_ seed: UInt64) { state = seed | 1 }
    mutating func next() -> UInt64 {
        state ^= state >> 12; state ^= state << 25; state ^= state >> 27
        return state &* 2_685_821_657_736_338_717
    }
    mutating func uniform() -> Float { Float(next() >> 40) * 0x1p-24 }
    mutating func normal() -> Float {
        let u = max(uniform(), 1e-7), v = uniform()
        return (-2 * Float.log(u)).squareRoot() * Float.cos(2 * .pi * v)
    }
    mutating func floats(_ count: Int, quantized: Bool = false) -> [Float] {
        (0..<count).map { _ in quantized ? Float(Int(next() % 7)) - 3 : normal() }
    }
}

extension Float {
    static func log(_ x: Float) -> Float { Float(_log(Double(x))) }
    static func cos(_ x: Float) -> Float { Float(_cos(Double(x))) }
}

// Foundation-free math helpers for the tests.
func _log(_ x: Double) -> Double {
    var y = (x - 1) / (x + 1), sum = 0.0, term = y
    let y2 = y * y
    for k in stride(from: 1, through: 199, by: 2) { sum += term / Double(k); term *= y2 }
    y = 2 * sum
    return y
}
func _cos(_ x: Double) -> Double {
    var r = x.truncatingRemainder(dividingBy: 2 * .pi)
    if r > .pi { r -= 2 * .pi }
    var sum = 1.0, term = 1.0
    for k in 1..<30 { term *= -r * r / Double((2 * k - 1) * (2 * k)); sum += term }
    return sum
}

@Suite("Mask invariants")
struct InvariantTests {
    @Test("exact count per row, per layer, globally", arguments: [0.0, 0.1, 0.25, 1.0 / 3, 0.5, 0.9, 0.999, 1.0])
    func exactCounts(sparsity: Double) throws {
        var rng = TestRandom(42)
        let w = try Matrix(rows: 13, cols: 1537, values: rng.floats(13 * 1537, quantized: true))
        let row = try pruningMask(for: w, criterion: .magnitude, selection: .perRow(sparsity: sparsity))
        let perRow = prunedCount(groupSize: 1537, sparsity: sparsity)
        for r in 0..<13 {
            let pruned = (0..<1537).filter { !row[r, $0] }.count
            #expect(pruned == perRow)
        }
        let layer = try pruningMask(for: w, criterion: .magnitude, selection: .perLayer(sparsity: sparsity))
        #expect(layer.values.filter { $0 == 0 }.count == prunedCount(groupSize: 13 * 1537, sparsity: sparsity))
        let w2 = try Matrix(rows: 5, cols: 9, values: rng.floats(45))
        let masks = try pruningMasks(for: [(w, .magnitude), (w2, .magnitude)], selection: .global(sparsity: sparsity))
        let total = masks.map { $0.values.filter { $0 == 0 }.count }.reduce(0, +)
        #expect(total == prunedCount(groupSize: 13 * 1537 + 45, sparsity: sparsity))
    }

    @Test("N:M keeps exactly N in every group of M", arguments: [(2, 4), (1, 4), (3, 4), (4, 8), (2, 8), (5, 16), (8, 32)])
    func nmPattern(n: Int, m: Int) throws {
        var rng = TestRandom(UInt64(n * 100 + m))
        let cols = m * 37
        for quantized in [false, true] {
            let w = try Matrix(rows: 6, cols: cols, values: rng.floats(6 * cols, quantized: quantized))
            let mask = try pruningMask(for: w, criterion: .magnitude, selection: .nm(n: n, m: m))
            for r in 0..<6 {
                for g in stride(from: 0, to: cols, by: m) {
                    let kept = (g..<(g + m)).filter { mask[r, $0] }
                    #expect(kept.count == n)
                    // Every kept entry is at least as large as every pruned one.
                    let keptMin = kept.map { abs(w[r, $0]) }.min()!
                    let prunedMax = (g..<(g + m)).filter { !mask[r, $0] }.map { abs(w[r, $0]) }.max()!
                    #expect(keptMin >= prunedMax)
                }
            }
        }
    }

    @Test("-0.0 and +0.0 tie and are broken by index")
    func signedZerosTie() throws {
        let w = try Matrix(rows: 1, cols: 4, values: [Float(0.0), -0.0, 0.0, -0.0])
        let mask = try pruningMask(for: w, criterion: .scores, selection: .perRow(sparsity: 0.5))
        #expect(mask.values == [0, 0, 1, 1])
    }

    @Test("the large-row path equals sorting on adversarial rows")
    func bracketedSelectionMatchesSort() throws {
        var rng = TestRandom(7)
        let cols = 5000
        let patterns: [[Float]] = [
            (0..<cols).map { Float($0) },                      // ascending
            (0..<cols).map { Float(cols - $0) },               // descending
            (0..<cols).map { _ in 1 },                         // all equal
            (0..<cols).map { $0 % 2 == 0 ? 0 : 1 },            // two values
            (0..<cols).map { $0 < 100 ? Float(rng.normal()) : 5 },  // mostly one value
            rng.floats(cols),
        ]
        for values in patterns {
            for sparsity in [0.01, 0.5, 0.93] {
                let w = try Matrix(rows: 1, cols: cols, values: values)
                let mask = try pruningMask(for: w, criterion: .scores, selection: .perRow(sparsity: sparsity))
                let k = prunedCount(groupSize: cols, sparsity: sparsity)
                let order = (0..<cols).sorted { (values[$0], $0) < (values[$1], $1) }
                var expected = [UInt8](repeating: 1, count: cols)
                for i in order.prefix(k) { expected[i] = 0 }
                #expect(mask.values == expected)
            }
        }
    }

    @Test("applying a mask zeroes exactly the pruned weights in their dtype")
    func applyMaskZeroes() throws {
        var rng = TestRandom(3)
        var w = try Matrix<Float16>(rows: 4, cols: 8, floats: rng.floats(32))
        let before = w
        let mask = try pruningMask(for: w, criterion: .magnitude, selection: .nm(n: 2, m: 4))
        try applyMask(mask, to: &w)
        for r in 0..<4 {
            for c in 0..<8 {
                #expect(w[r, c] == (mask[r, c] ? before[r, c] : 0))
            }
        }
        #expect(mask.sparsity == 0.5)
        #expect(mask.rowSparsities == [0.5, 0.5, 0.5, 0.5])
    }

    @Test("scores are one float32 operation")
    func scoresAreExact() throws {
        var rng = TestRandom(11)
        let values = rng.floats(24)
        let norms = (0..<6).map { _ in rng.uniform() * 4 }
        let w = try Matrix(rows: 4, cols: 6, values: values.map { Double($0) * 1.000001 })
        let scores = try importanceScores(for: w, criterion: .wanda(featureNorms: norms))
        for r in 0..<4 {
            for c in 0..<6 {
                #expect(scores[r, c] == abs(Float(w[r, c])) * norms[c])
            }
        }
        let random = try importanceScores(for: w, criterion: .random(seed: 5))
        #expect(random[1, 2] == randomScore(seed: 5, position: 8))
    }
}

@Suite("Sparse formats")
struct SparseFormatTests {
    @Test("2:4, CSR and bit mask round-trip a pruned float16 matrix")
    func roundTrips() throws {
        var rng = TestRandom(17)
        var w = try Matrix<Float16>(rows: 5, cols: 16, floats: rng.floats(80))
        try applyMask(try pruningMask(for: w, criterion: .magnitude, selection: .nm(n: 2, m: 4)), to: &w)
        var weights = w.values
        var values = [UInt16](repeating: 0, count: 40), meta = [UInt8](repeating: 0, count: 10)
        var back = [Float16](repeating: 1, count: 80), fromCSR = [Float16](repeating: 1, count: 80)
        var offsets = [Int64](repeating: 0, count: 6), columns = [Int64](repeating: 0, count: 80)
        var packed = [UInt16](repeating: 0, count: 80)
        try weights.withUnsafeMutableBytes { wb in
            let view = try MatrixView(base: wb.baseAddress!, dtype: .float16, rows: 5, cols: 16, rowStride: 16)
            #expect(try SparseFormats.countNonZero(view) == 40)
            try values.withUnsafeMutableBytes { v in
                try meta.withUnsafeMutableBufferPointer { m in
                    try SparseFormats.export24(view, values: v.baseAddress!, metadata: m.baseAddress!)
                    try back.withUnsafeMutableBytes { b in
                        let out = try MatrixView(base: b.baseAddress!, dtype: .float16, rows: 5, cols: 16, rowStride: 16)
                        try SparseFormats.import24(values: UnsafeRawPointer(v.baseAddress!), metadata: m.baseAddress!, into: out)
                    }
                }
            }
            try offsets.withUnsafeMutableBufferPointer { o in
                try columns.withUnsafeMutableBufferPointer { c in
                    try packed.withUnsafeMutableBytes { p in
                        try SparseFormats.exportCSR(view, capacity: 80, rowOffsets: o.baseAddress!, columns: c.baseAddress!, values: p.baseAddress!)
                        try fromCSR.withUnsafeMutableBytes { b in
                            let out = try MatrixView(base: b.baseAddress!, dtype: .float16, rows: 5, cols: 16, rowStride: 16)
                            try SparseFormats.importCSR(rowOffsets: o.baseAddress!, columns: c.baseAddress!,
                                                        values: UnsafeRawPointer(p.baseAddress!), into: out)
                        }
                    }
                }
            }
        }
        #expect(back == w.values)
        #expect(fromCSR == w.values)
        #expect(offsets == [0, 8, 16, 24, 32, 40])
    }
}
