import Foundation
import PruneKit
import Testing

/// A case of Tests/vectors/sparsegpt.txt.
struct SparseGPTCase: CustomStringConvertible, Sendable {
    var fields: [String: String]
    var description: String { fields["name"]! }

    static func loadAll() -> [SparseGPTCase] { VectorCase.manifest("sparsegpt.txt").map { SparseGPTCase(fields: $0) } }

    func bytes(_ suffix: String) -> [UInt8]? {
        let path = VectorCase.folder.appendingPathComponent("sgpt_\(fields["name"]!)\(suffix)").path
        return (try? Data(contentsOf: URL(fileURLWithPath: path))).map { [UInt8]($0) }
    }

    func doubles(_ suffix: String) -> [Double] {
        bytes(suffix)!.withUnsafeBytes { Array($0.bindMemory(to: Double.self)) }
    }
}

@Suite("SparseGPT against the float64 numpy reference")
struct SparseGPTTests {
    @Test("golden vectors", arguments: SparseGPTCase.loadAll())
    func golden(_ c: SparseGPTCase) throws {
        let rows = Int(c.fields["rows"]!)!, cols = Int(c.fields["cols"]!)!
        var w = c.doubles(".w.bin")
        let h = c.doubles(".h.bin"), expected = c.doubles(".out.bin")
        let given = c.bytes(".given.bin"), expectedMask = c.bytes(".mask.bin")
        var out = [Double](repeating: 0, count: rows * cols)
        var mask = [UInt8](repeating: 9, count: rows * cols)
        let pattern: ReconstructionOptions.Pattern = c.fields["scope"] == "nm"
            ? .nm(n: Int(c.fields["n"]!)!, m: Int(c.fields["m"]!)!)
            : .unstructured(sparsity: Double(c.fields["sparsity"]!)!)
        let options = ReconstructionOptions(pattern: pattern, blockSize: Int(c.fields["block"]!)!, precision: .float64)
        try w.withUnsafeMutableBytes { wb in
            try out.withUnsafeMutableBytes { ob in
                let wv = try MatrixView(base: wb.baseAddress!, dtype: .float64, rows: rows, cols: cols, rowStride: cols)
                let ov = try MatrixView(base: ob.baseAddress!, dtype: .float64, rows: rows, cols: cols, rowStride: cols)
                try h.withUnsafeBufferPointer { hb in
                    switch c.fields["op"]! {
                    case "sparsegpt":
                        try mask.withUnsafeMutableBufferPointer { mb in
                            try sparseGPT(weights: wv, hessian: hb.baseAddress!, hessianSize: cols, options: options,
                                          mask: mb.baseAddress!, output: ov)
                        }
                    case "reconstruct":
                        try given!.withUnsafeBufferPointer { gb in
                            try reconstructWeights(weights: wv, hessian: hb.baseAddress!, hessianSize: cols,
                                                   mask: gb.baseAddress!, options: options, output: ov)
                        }
                    default:
                        try given!.withUnsafeBufferPointer { gb in
                            try pruneColumns(weights: wv, hessian: hb.baseAddress!, hessianSize: cols,
                                             keepColumns: gb.baseAddress!, options: options, output: ov)
                        }
                    }
                }
            }
        }
        let scale = expected.map(abs).max()!
        let worst = zip(out, expected).map { abs($0 - $1) }.max()!
        #expect(worst <= 1e-9 * scale)
        if let expectedMask { #expect(mask == expectedMask) }
    }
}

@Suite("SparseGPT through the owned-matrix API")
struct SparseGPTAPITests {
    @Test("reconstruction lowers the output error, and bad Hessians are refused")
    func ownedMatrices() throws {
        var rng = TestRandom(21)
        let (rows, cols, tokens) = (8, 32, 128)
        var stats = try ActivationStatistics(features: cols, gram: true)
        let x = try Matrix<Float>(rows: tokens, cols: cols, values: rng.floats(tokens * cols))
        try stats.accumulate(x)
        let w = try Matrix<Float>(rows: rows, cols: cols, values: rng.floats(rows * cols))
        let (mask, updated) = try sparseGPT(w, hessian: try stats.gram(), options: .init(pattern: .nm(n: 2, m: 4), blockSize: 16))
        #expect(mask.sparsity == 0.5)
        func error(_ v: Matrix<Float>) -> Double {
            var total = 0.0
            for t in 0..<tokens {
                for r in 0..<rows {
                    var s = 0.0
                    for c in 0..<cols { s += Double(w[r, c] - v[r, c]) * Double(x[t, c]) }
                    total += s * s
                }
            }
            return total
        }
        var masked = w
        try applyMask(mask, to: &masked)
        #expect(error(updated) < error(masked))
        let again = try reconstructWeights(w, hessian: try stats.gram(), mask: mask, options: .init(blockSize: 16))
        #expect(again.values.count == updated.values.count)
        let dropped = try pruneColumns(w, hessian: try stats.gram(), keep: (0..<cols).map { $0 % 3 != 0 })
        #expect((0..<rows).allSatisfy { dropped[$0, 0] == 0 })
        #expect(throws: PruneKitError.self) { try sparseGPT(w, hessian: [1, 2, 3]) }
    }

    @Test("the written weights do not depend on the thread count, in every output dtype")
    func threadCountsGiveTheSameBytes() throws {
        var rng = TestRandom(41)
        let (rows, cols, tokens) = (67, 48, 96)
        var stats = try ActivationStatistics(features: cols, gram: true)
        try stats.accumulate(try Matrix<Float>(rows: tokens, cols: cols, values: rng.floats(tokens * cols)))
        let h = try stats.gram()
        var w = rng.floats(rows * cols, quantized: true)  // ties
        let dtypes: [DType] = [.float32, .float64, .float16, .bfloat16]
        let patterns: [ReconstructionOptions.Pattern] = [.unstructured(sparsity: 0.5), .nm(n: 2, m: 4)]
        /// Output bytes and mask of one call at `threads`.
        func run(_ op: Int, _ pattern: ReconstructionOptions.Pattern, _ precision: Precision, _ dtype: DType,
                 threads: Int) throws -> [UInt8] {
            var out = [UInt8](repeating: 0xAB, count: rows * cols * dtype.size)
            var mask = [UInt8](repeating: 9, count: rows * cols)
            let keep = (0..<cols).map { UInt8($0 % 3 == 0 ? 0 : 1) }
            let options = ReconstructionOptions(pattern: pattern, blockSize: 16, precision: precision, threads: threads)
            try w.withUnsafeMutableBytes { wb in
                try out.withUnsafeMutableBytes { ob in
                    let wv = try MatrixView(base: wb.baseAddress!, dtype: .float32, rows: rows, cols: cols, rowStride: cols)
                    let ov = try MatrixView(base: ob.baseAddress!, dtype: dtype, rows: rows, cols: cols, rowStride: cols)
                    try h.withUnsafeBufferPointer { hb in
                        try mask.withUnsafeMutableBufferPointer { mb in
                            if op == 0 {
                                try sparseGPT(weights: wv, hessian: hb.baseAddress!, hessianSize: cols, options: options,
                                              mask: mb.baseAddress!, output: ov)
                            } else {
                                try keep.withUnsafeBufferPointer { kb in
                                    try pruneColumns(weights: wv, hessian: hb.baseAddress!, hessianSize: cols,
                                                     keepColumns: kb.baseAddress!, options: options, output: ov)
                                }
                            }
                        }
                    }
                }
            }
            return out + mask
        }
        for op in [0, 1] {
            for pattern in op == 0 ? patterns : [patterns[0]] {
                for precision in [Precision.float32, .float64] {
                    for dtype in dtypes {
                        let one = try run(op, pattern, precision, dtype, threads: 1)
                        #expect(one.prefix(rows * cols * dtype.size).contains { $0 != 0xAB })
                        for threads in [2, 3, 8] {
                            #expect(try run(op, pattern, precision, dtype, threads: threads) == one,
                                    "op \(op), \(pattern), \(precision), \(dtype), \(threads) threads")
                        }
                    }
                }
            }
        }
        let weights = try Matrix<Float>(rows: rows, cols: cols, values: w)
        let single = try lowRank(weights, hessian: h, options: .init(rank: 5, threads: 1))
        for threads in [2, 3] {
            let many = try lowRank(weights, hessian: h, options: .init(rank: 5, threads: threads))
            #expect(many.a.values.map(\.bitPattern) == single.a.values.map(\.bitPattern))
            #expect(many.b.values.map(\.bitPattern) == single.b.values.map(\.bitPattern))
        }
    }
}
