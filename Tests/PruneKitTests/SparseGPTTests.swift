import Foundation
import PruneKit
import Testing

/// A case of Tests/vectors/sparsegpt.txt.
struct SparseGPTCase: CustomStringConvertible, Sendable {
    var fields: [String: String]
    var description: String { fields["name"]! }

    static func loadAll() -> [SparseGPTCase] {
        let url = VectorCase.folder.appendingPathComponent("sparsegpt.txt")
        guard let text = try? String(contentsOf: url, encoding: .utf8) else { return [] }
        return text.split(separator: "\n").map { line in
            var f: [String: String] = [:]
            for pair in line.split(separator: " ") {
                let kv = pair.split(separator: "=", maxSplits: 1)
                f[String(kv[0])] = String(kv[1])
            }
            return SparseGPTCase(fields: f)
        }
    }

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
