import CPruneKit
import PruneKit
import Testing

@Suite("Errors: clear status, nothing written")
struct ErrorTests {
    @Test("status raw values agree with the C header")
    func statusValuesMatchHeader() {
        let header: [(PruneKitStatus, UInt32)] = [
            (.ok, PK_OK.rawValue), (.nullPointer, PK_ERROR_NULL_POINTER.rawValue),
            (.invalidArgument, PK_ERROR_INVALID_ARGUMENT.rawValue), (.invalidShape, PK_ERROR_INVALID_SHAPE.rawValue),
            (.unsupportedDType, PK_ERROR_UNSUPPORTED_DTYPE.rawValue), (.nonFinite, PK_ERROR_NON_FINITE.rawValue),
            (.structSize, PK_ERROR_STRUCT_SIZE.rawValue), (.outOfMemory, PK_ERROR_OUT_OF_MEMORY.rawValue),
            (.corruptData, PK_ERROR_CORRUPT_DATA.rawValue), (.bufferTooSmall, PK_ERROR_BUFFER_TOO_SMALL.rawValue),
            (.internal, PK_ERROR_INTERNAL.rawValue), (.numeric, PK_ERROR_NUMERIC.rawValue),
            (.cancelled, PK_ERROR_CANCELLED.rawValue),
        ]
        #expect(header.count == PruneKitStatus.allCases.count)
        for (status, value) in header {
            #expect(UInt32(status.rawValue) == value)
            #expect(String(cString: pk_status_string(status.rawValue)) == status.name)
        }
        #expect(DType.float32.rawValue == Int32(PK_DTYPE_FLOAT32.rawValue))
        #expect(DType.bfloat16.rawValue == Int32(PK_DTYPE_BFLOAT16.rawValue))
        #expect(pk_version_number() == Int32(PK_VERSION_MAJOR * 10000 + PK_VERSION_MINOR * 100 + PK_VERSION_PATCH))
        #expect(String(cString: pk_version_string()) == PK_VERSION_STRING)
    }

    func expectError(_ status: PruneKitStatus, containing text: String, _ body: () throws -> Void) {
        do {
            try body()
            Issue.record("expected \(status.name)")
        } catch let error as PruneKitError {
            #expect(error.status == status)
            #expect(error.message.contains(text), "\(error.message)")
        } catch {
            Issue.record("unexpected error \(error)")
        }
    }

    @Test("bad parameters are reported")
    func badParameters() throws {
        let w = try Matrix(rows: 2, cols: 6, values: (0..<12).map { Float($0) })
        expectError(.invalidArgument, containing: "sparsity") { _ = try pruningMask(for: w, criterion: .magnitude, selection: .perRow(sparsity: 1.5)) }
        expectError(.invalidArgument, containing: "sparsity") { _ = try pruningMask(for: w, criterion: .magnitude, selection: .perRow(sparsity: .nan)) }
        expectError(.invalidArgument, containing: "N:M") { _ = try pruningMask(for: w, criterion: .magnitude, selection: .nm(n: 4, m: 4)) }
        expectError(.invalidShape, containing: "divide") { _ = try pruningMask(for: w, criterion: .magnitude, selection: .nm(n: 2, m: 4)) }
        expectError(.invalidShape, containing: "length 5") { _ = try pruningMask(for: w, criterion: .wanda(featureNorms: [1, 2, 3, 4, 5]), selection: .perRow(sparsity: 0.5)) }
        expectError(.invalidArgument, containing: "negative") { _ = try pruningMask(for: w, criterion: .stade(featureStd: [1, 2, 3, -4, 5, 6]), selection: .perRow(sparsity: 0.5)) }
        expectError(.invalidArgument, containing: "num_threads") { _ = try pruningMask(for: w, criterion: .magnitude, selection: .perRow(sparsity: 0.5), threads: -1) }
    }

    @Test("non-finite values name the first position, and nothing is written",
          arguments: ["row", "layer", "global", "nm"])
    func nonFinite(scope: String) throws {
        var values = (0..<48).map { Float($0) + 1 }
        values[2 * 8 + 5] = .nan
        values[3 * 8 + 1] = .infinity
        var weights = values
        var mask = [UInt8](repeating: 9, count: 48)
        let selection: Selection = switch scope {
        case "row": .perRow(sparsity: 0.5)
        case "layer": .perLayer(sparsity: 0.5)
        case "global": .global(sparsity: 0.5)
        default: .nm(n: 2, m: 4)
        }
        for threads in [1, 4] {
            expectError(.nonFinite, containing: "row 2, column 5") {
                try weights.withUnsafeMutableBytes { raw in
                    let view = try MatrixView(base: raw.baseAddress!, dtype: .float32, rows: 6, cols: 8, rowStride: 8)
                    try mask.withUnsafeMutableBufferPointer { m in
                        try pruningMask(weights: view, criterion: .magnitude, selection: selection, threads: threads, into: m.baseAddress!)
                    }
                }
            }
        }
        #expect(mask == [UInt8](repeating: 9, count: 48))
        // Overflowing scores are non-finite too.
        let big = try Matrix(rows: 1, cols: 4, values: [Float(1e30), 1, 2, 3])
        expectError(.nonFinite, containing: "overflows") { _ = try pruningMask(for: big, criterion: .wanda(featureNorms: [1e30, 1, 1, 1]), selection: .perRow(sparsity: 0.5)) }
    }

    @Test("bad views are refused")
    func badViews() {
        var storage = [Float](repeating: 1, count: 16)
        storage.withUnsafeMutableBytes { raw in
            expectError(.invalidShape, containing: "row_stride") { _ = try MatrixView(base: raw.baseAddress!, dtype: .float32, rows: 2, cols: 8, rowStride: 4) }
            expectError(.invalidShape, containing: "positive") { _ = try MatrixView(base: raw.baseAddress!, dtype: .float32, rows: 0, cols: 8, rowStride: 8) }
            expectError(.invalidArgument, containing: "aligned") { _ = try MatrixView(base: raw.baseAddress! + 2, dtype: .float32, rows: 1, cols: 2, rowStride: 2) }
            expectError(.invalidShape, containing: "too large") { _ = try MatrixView(base: raw.baseAddress!, dtype: .float32, rows: Int.max / 2, cols: 8, rowStride: 8) }
        }
    }

    @Test("a mask with bytes other than 0 and 1 is refused before any weight changes")
    func badMaskBytes() throws {
        var w = try Matrix(rows: 1, cols: 4, values: [Float(1), 2, 3, 4])
        let mask = try Mask(rows: 1, cols: 4, values: [0, 1, 2, 1])
        expectError(.invalidArgument, containing: "index 2") { try applyMask(mask, to: &w) }
        #expect(w.values == [1, 2, 3, 4])
    }
}
