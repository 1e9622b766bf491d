import PruneKit
import Testing

/// The owned (public) forms of what was reachable from Swift only through views: each gives the
/// bytes of the view-based (package) form it wraps, and checks its arrays' lengths itself.
@Suite("Owned Swift API")
struct OwnedAPITests {
    func pruned24() throws -> Matrix<Float16> {
        var rng = TestRandom(17)
        var w = try Matrix<Float16>(rows: 5, cols: 16, floats: rng.floats(80))
        try applyMask(try pruningMask(for: w, criterion: .magnitude, selection: .nm(n: 2, m: 4)), to: &w)
        return w
    }

    /// The status `body` fails with, nil if it succeeds (or throws something else).
    func status(_ body: () throws -> Void) -> PruneKitStatus? {
        do { try body() } catch let error as PruneKitError { return error.status } catch { return nil }
        return nil
    }

    @Test("sparse formats round-trip and refuse arrays of the wrong length")
    func sparseFormats() throws {
        let w = try pruned24()
        #expect(try SparseFormats.countNonZero(w) == 40)
        let (values, metadata) = try SparseFormats.export24(w)
        #expect(values.rows == 5 && values.cols == 8 && metadata.count == 10)
        #expect(try SparseFormats.import24(values: values, metadata: metadata).values == w.values)
        let csr = try SparseFormats.exportCSR(w)
        #expect(csr.rowOffsets == [0, 8, 16, 24, 32, 40] && csr.columns.count == 40 && csr.values.count == 40)
        #expect(try SparseFormats.importCSR(rowOffsets: csr.rowOffsets, columns: csr.columns, values: csr.values,
                                            cols: 16).values == w.values)
        let bitmask = try SparseFormats.exportBitmask(w)
        #expect(bitmask.bits.count == 10 && bitmask.values == csr.values)
        #expect(try SparseFormats.importBitmask(bits: bitmask.bits, values: bitmask.values, rows: 5, cols: 16).values == w.values)

        #expect(status { _ = try SparseFormats.import24(values: values, metadata: Array(metadata.dropLast())) } == .invalidShape)
        #expect(status { _ = try SparseFormats.importCSR(rowOffsets: csr.rowOffsets, columns: Array(csr.columns.dropLast()),
                                                         values: csr.values, cols: 16) } == .invalidShape)
        var decreasing = csr.rowOffsets
        decreasing[1] = 20
        #expect(status { _ = try SparseFormats.importCSR(rowOffsets: decreasing, columns: csr.columns, values: csr.values,
                                                         cols: 16) } == .corruptData)
        #expect(status { _ = try SparseFormats.importBitmask(bits: bitmask.bits, values: Array(bitmask.values.dropLast()),
                                                             rows: 5, cols: 16) } == .invalidShape)
        let dense = try Matrix<Float>(rows: 1, cols: 4, values: [1, 2, 3, 0])
        #expect(status { _ = try SparseFormats.export24(dense) } == .invalidArgument)
        let empty = try SparseFormats.exportCSR(try Matrix<Float>(rows: 2, cols: 3, values: [0, 0, 0, 0, 0, 0]))
        #expect(empty.rowOffsets == [0, 0, 0] && empty.columns.isEmpty)
        #expect(try SparseFormats.importCSR(rowOffsets: empty.rowOffsets, columns: [], values: [Float](), cols: 3).values
                == [0, 0, 0, 0, 0, 0])
    }

    /// A layer, its calibration Gram matrix and the layer's magnitude-pruned copy.
    func layer() throws -> (w: Matrix<Float>, pruned: Matrix<Float>, gram: [Double], mean: [Double]) {
        var rng = TestRandom(5)
        let w = try Matrix<Float>(rows: 6, cols: 8, floats: rng.floats(48))
        var stats = try ActivationStatistics(features: 8, gram: true)
        try stats.accumulate(try Matrix<Float>(rows: 32, cols: 8, floats: rng.floats(256)))
        var pruned = w
        try applyMask(try pruningMask(for: w, criterion: .magnitude, selection: .perRow(sparsity: 0.5)), to: &pruned)
        return (w, pruned, try stats.gram(), try stats.mean())
    }

    @Test("output error, bias compensation and swap refinement equal the view-based core")
    func measures() throws {
        let (w, pruned, gram, mean) = try layer()
        let (error, relative) = try outputError(original: w, pruned: pruned, hessian: gram)
        let viewed = try w.withMatrixView { o throws(PruneKitError) in
            try pruned.withMatrixView { p throws(PruneKitError) in
                try gram.withUnsafeBufferPointer { h throws(PruneKitError) in
                    try outputError(original: o, pruned: p, hessian: h.baseAddress!, hessianSize: 8)
                }
            }
        }
        #expect(error == viewed.absolute && relative == viewed.relative && error > 0 && relative > 0 && relative < 1)
        #expect(status { _ = try outputError(original: w, pruned: pruned, hessian: Array(gram.dropLast())) } == .invalidShape)

        let bias = try Matrix<Double>(rows: 1, cols: 6, values: [1, 2, 3, 4, 5, 6])
        let compensated = try compensatedBias(original: w, pruned: pruned, mean: mean, bias: bias)
        for r in 0..<6 {
            var shift = 0.0
            for j in 0..<8 { shift += (Double(w[r, j]) - Double(pruned[r, j])) * mean[j] }
            #expect(abs(compensated[0, r] - (bias[0, r] + shift)) <= 1e-12 * (1 + abs(shift)))
        }
        #expect(status { _ = try compensatedBias(original: w, pruned: pruned, mean: [1], bias: bias) } == .invalidShape)

        let mask = try pruningMask(for: w, criterion: .magnitude, selection: .perRow(sparsity: 0.5))
        let (refined, swaps) = try refinedMask(mask, weights: w, hessian: gram)
        var bytes = mask.values
        let viewSwaps = try w.withMatrixView { v throws(PruneKitError) in
            try gram.withUnsafeBufferPointer { h throws(PruneKitError) in
                try bytes.withUnsafeMutableBufferPointer { m throws(PruneKitError) in
                    try refineMask(weights: v, hessian: h.baseAddress!, hessianSize: 8, options: .init(), mask: m.baseAddress!)
                }
            }
        }
        #expect(refined.values == bytes && swaps == viewSwaps)
        #expect(refined.rowSparsities == mask.rowSparsities)
    }

    @Test("outlier ratio, key channels and soft masks equal the view-based core")
    func channels() throws {
        let (w, _, _, _) = try layer()
        let ratio = try outlierRatio(for: w, criterion: .magnitude, threshold: 1.5)
        let viewRatio = try w.withMatrixView { v throws(PruneKitError) in
            try outlierRatio(weights: v, criterion: .magnitude, threshold: 1.5)
        }
        #expect(ratio == viewRatio && ratio > 0 && ratio < 1)
        #expect(status { _ = try outlierRatio(for: w, criterion: .magnitude, threshold: 0) } == .invalidArgument)

        var rng = TestRandom(9)
        let queries = try Matrix<Float>(rows: 10, cols: 16, floats: rng.floats(160))
        let keys = try Matrix<Float>(rows: 12, cols: 8, floats: rng.floats(96))
        let (keep, scores) = try keyChannels(queries: queries, keys: keys, heads: 2, ratio: 0.5)
        let viewed = try queries.withMatrixView { q throws(PruneKitError) in
            try keys.withMatrixView { k throws(PruneKitError) in try keyChannelSelection(queries: q, keys: k, heads: 2, ratio: 0.5) }
        }
        #expect(keep == viewed.keep.map { $0 != 0 } && scores == viewed.scores)
        #expect(keep.filter { $0 }.count == 4)

        let (m, dm) = try softMask(for: w, selection: .perRow(sparsity: 0.5), temperature: 0.01)
        var viewMask = [Float](repeating: -1, count: 48), viewDerivative = [Float](repeating: -1, count: 48)
        try w.withMatrixView { v throws(PruneKitError) in
            try viewMask.withUnsafeMutableBufferPointer { a throws(PruneKitError) in
                try viewDerivative.withUnsafeMutableBufferPointer { b throws(PruneKitError) in
                    try softMask(weights: v, selection: .perRow(sparsity: 0.5), temperature: 0.01, into: a.baseAddress!,
                                 derivative: b.baseAddress!)
                }
            }
        }
        #expect(m.values == viewMask && dm.values == viewDerivative)
        #expect(m.values.allSatisfy { $0 >= 0 && $0 <= 1 })
        #expect(status { _ = try softMask(for: w, selection: .nm(n: 2, m: 4), temperature: 0.01) } == .invalidArgument)
    }
}
