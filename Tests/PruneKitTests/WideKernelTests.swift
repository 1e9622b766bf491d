import CPruneKitShims
@testable import PruneKit
import Testing

/// The AVX2 kernels of the C shim stand in for baseline loops only when they give the same
/// float64 sums bit for bit, so that masks never depend on the machine. These tests run both
/// paths on the same data (when this CPU has AVX2; otherwise there is nothing to compare).
@Suite struct WideKernelTests {
    /// Structure sums of one member by both paths, or both errors' messages.
    func bothPaths(_ values: inout [Float], rows: Int, cols: Int, axis: StructureAxis, squared: Bool,
                   criterion: CriterionView = .magnitude) throws -> (baseline: Result<[UInt64], PruneKitError>, wide: Result<[UInt64], PruneKitError>) {
        try values.withUnsafeMutableBytes { raw in
            let view = try MatrixView(base: raw.baseAddress!, dtype: .float32, rows: rows, cols: cols, rowStride: cols)
            let member = StructureMemberView(tensor: view, axis: axis, criterion: criterion)
            let n = try StructureLayout(axis: axis, rows: rows, cols: cols).count
            func run(_ wide: Bool) -> Result<[UInt64], PruneKitError> {
                var sums = [Double](repeating: -1, count: n)
                do throws(PruneKitError) {
                    try sums.withUnsafeMutableBufferPointer { (b) throws(PruneKitError) in
                        try memberStructureSums(member, structures: n, squared: squared, threads: 2, label: "",
                                                into: b.baseAddress!, wide: wide)
                    }
                    return .success(sums.map(\.bitPattern))
                } catch {
                    return .failure(error)
                }
            }
            return (run(false), run(true))
        }
    }

    @Test func structureSumsAreTheSameBitForBit() throws {
        guard prunekit_wide_supported() != 0 else { return }
        var random = TestRandom(41)
        for (rows, cols) in [(1, 1), (3, 7), (4, 8), (9, 13), (67, 300), (130, 33), (5, 1031)] {
            var values = random.floats(rows * cols).map { $0 * 1e3 }
            for axis in [StructureAxis.rows(span: 1), .cols(span: 1), .blocks(rows: 3, cols: 5), .blocks(rows: 64, cols: 16)] {
                for squared in [false, true] {
                    let (baseline, wide) = try bothPaths(&values, rows: rows, cols: cols, axis: axis, squared: squared)
                    #expect(try baseline.get() == wide.get(), "\(rows) x \(cols) \(axis) squared \(squared)")
                }
            }
            // Scores that are not the weights themselves (Wanda) take the same kernels.
            var features = random.floats(cols).map { abs($0) }
            try features.withUnsafeBufferPointer { f in
                for axis in [StructureAxis.rows(span: 1), .cols(span: 1)] {
                    let (baseline, wide) = try bothPaths(&values, rows: rows, cols: cols, axis: axis, squared: true,
                                                         criterion: .wanda(featureValues: f))
                    #expect(try baseline.get() == wide.get(), "wanda \(rows) x \(cols) \(axis)")
                }
            }
        }
    }

    @Test func nonFiniteEntriesAreReportedAlikeByBothPaths() throws {
        guard prunekit_wide_supported() != 0 else { return }
        var random = TestRandom(43)
        let rows = 70, cols = 21
        for bad in [Float.nan, .infinity, -.infinity] {
            for position in [0, 5 * cols + 20, 66 * cols + 3, rows * cols - 1] {
                var values = random.floats(rows * cols)
                values[position] = bad
                for axis in [StructureAxis.rows(span: 1), .cols(span: 1)] {
                    let (baseline, wide) = try bothPaths(&values, rows: rows, cols: cols, axis: axis, squared: true)
                    guard case .failure(let a) = baseline, case .failure(let b) = wide else {
                        Issue.record("\(bad) at \(position), \(axis): both paths must fail")
                        continue
                    }
                    #expect(a.message == b.message)
                    #expect(a.message.contains("row \(position / cols)"), "\(a.message)")
                }
            }
        }
    }
}

/// SparseGPT's in-block updates: the AVX2 kernel against the baseline loop, bit for bit.
@Suite struct WideBlockUpdateTests {
    func compare<T: ReconstructionScalar>(_: T.Type, seed: UInt64) {
        var random = TestRandom(seed)
        for (start, count) in [(0, 128), (256, 128), (40, 13), (7, 1), (0, 9), (3, 64)] {
            let end = start + count
            var row = (0..<end).map { _ in T(Double(random.normal())) }
            let diagonal = (0..<end).map { _ in T(Double(0.5 + random.uniform())) }
            var inverse = [T](repeating: 0, count: count * count)
            for i in 0..<count { for j in i..<count { inverse[i * count + j] = T(Double(random.normal())) } }
            // Pruned columns in column order, about half, always including the last one.
            let list = (start..<end).filter { $0 == end - 1 || random.next() % 2 == 0 }.map { Int32($0) }
            var wide = row
            diagonal.withUnsafeBufferPointer { d in
                inverse.withUnsafeBufferPointer { u in
                    list.withUnsafeBufferPointer { l in
                        row.withUnsafeMutableBufferPointer { r in
                            OBS<T>.blockUpdates(r.baseAddress!, list: l.baseAddress!, listed: l.count, diagonal: d.baseAddress!,
                                                inverse: u.baseAddress!, start: start, end: end, count: count, wide: false)
                        }
                        wide.withUnsafeMutableBufferPointer { r in
                            OBS<T>.blockUpdates(r.baseAddress!, list: l.baseAddress!, listed: l.count, diagonal: d.baseAddress!,
                                                inverse: u.baseAddress!, start: start, end: end, count: count, wide: true)
                        }
                    }
                }
            }
            #expect(row.map(\.double.bitPattern) == wide.map(\.double.bitPattern), "\(T.self) start \(start) count \(count)")
            #expect(list.allSatisfy { row[Int($0)] == 0 })
        }
    }

    @Test func float32UpdatesAreTheSameBitForBit() {
        guard prunekit_wide_supported() != 0 else { return }
        compare(Float.self, seed: 51)
    }

    @Test func float64UpdatesAreTheSameBitForBit() {
        guard prunekit_wide_supported() != 0 else { return }
        compare(Double.self, seed: 53)
    }
}
