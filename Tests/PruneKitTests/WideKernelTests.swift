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
            let n = try axis.structureCount(rows: rows, cols: cols, label: "")
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
