import Foundation
import PruneKit
import Testing

/// One case of Tests/vectors/manifest.txt with its files loaded.
struct VectorCase: CustomStringConvertible, Sendable {
    struct Layer: Sendable {
        var rows: Int, cols: Int, stride: Int
        var weights: [UInt8]
        var features: [Float]?
        var gradient: [UInt8]?
        var mask: [UInt8]
    }
    var name: String
    var criterion: String
    var scope: String
    var sparsity: Double
    var n: Int, m: Int
    var seed: UInt64
    var dtype: DType
    var layers: [Layer]
    var description: String { name }

    static let folder = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("vectors")

    static func loadAll() throws -> [VectorCase] {
        let manifest = try String(contentsOf: folder.appendingPathComponent("manifest.txt"), encoding: .utf8)
        return try manifest.split(separator: "\n").map { try VectorCase(line: String($0)) }
    }

    /// The fields of one manifest line: space-separated key=value pairs.
    static func fields(of line: some StringProtocol) -> [String: String] {
        var f: [String: String] = [:]
        for pair in line.split(separator: " ") {
            let kv = pair.split(separator: "=", maxSplits: 1)
            f[String(kv[0])] = String(kv[1])
        }
        return f
    }

    /// Every line's fields of a manifest in Tests/vectors (none when the file is missing).
    static func manifest(_ file: String) -> [[String: String]] {
        guard let text = try? String(contentsOf: folder.appendingPathComponent(file), encoding: .utf8) else { return [] }
        return text.split(separator: "\n").map { fields(of: $0) }
    }

    init(line: String) throws {
        let f = Self.fields(of: line)
        name = f["name"]!
        criterion = f["criterion"]!
        scope = f["scope"]!
        sparsity = Double(f["sparsity"]!)!
        n = Int(f["n"]!)!
        m = Int(f["m"]!)!
        seed = UInt64(f["seed"]!)!
        dtype = ["float32": DType.float32, "float64": .float64, "float16": .float16, "bfloat16": .bfloat16][f["dtype"]!]!
        let ints = { (key: String) in f[key]!.split(separator: ",").map { Int($0)! } }
        let (rows, cols, strides) = (ints("rows"), ints("cols"), ints("stride"))
        layers = []
        for i in 0..<Int(f["layers"]!)! {
            let base = VectorCase.folder.appendingPathComponent("\(name).L\(i)")
            func read(_ suffix: String) -> [UInt8]? {
                (try? Data(contentsOf: URL(fileURLWithPath: base.path + suffix))).map { [UInt8]($0) }
            }
            let features = read(".f.bin").map { bytes in
                bytes.withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
            }
            layers.append(Layer(rows: rows[i], cols: cols[i], stride: strides[i], weights: read(".w.bin")!,
                                features: features, gradient: read(".g.bin"), mask: read(".mask.bin")!))
        }
    }

    var selection: Selection {
        switch scope {
        case "row": .perRow(sparsity: sparsity)
        case "layer": .perLayer(sparsity: sparsity)
        case "global": .global(sparsity: sparsity)
        default: .nm(n: n, m: m)
        }
    }

    /// Runs the case through the Swift view API; returns the masks.
    func run(threads: Int = 0) throws -> [[UInt8]] {
        var weights = layers.map(\.weights)
        var gradients = layers.map { $0.gradient ?? [] }
        var masks = layers.map { [UInt8](repeating: 7, count: $0.rows * $0.cols) }
        var views: [(weights: MatrixView, criterion: CriterionView)] = []
        var pointers: [UnsafeMutablePointer<UInt8>] = []
        // The arrays outlive the call below; their buffers are stable while not mutated.
        for i in layers.indices {
            let layer = layers[i]
            let w = weights[i].withUnsafeMutableBytes { $0.baseAddress! }
            let view = try MatrixView(base: w, dtype: dtype, rows: layer.rows, cols: layer.cols, rowStride: layer.stride)
            let criterionView: CriterionView
            switch criterion {
            case "magnitude": criterionView = .magnitude
            case "random": criterionView = .random(seed: seed)
            case "scores": criterionView = .scores
            case "wanda", "stade":
                let f = layer.features!.withUnsafeBufferPointer { $0 }
                criterionView = criterion == "wanda" ? .wanda(featureValues: f) : .stade(featureValues: f)
            default:
                let g = gradients[i].withUnsafeMutableBytes { $0.baseAddress! }
                criterionView = .taylor(gradient: try MatrixView(base: g, dtype: dtype, rows: layer.rows, cols: layer.cols, rowStride: layer.cols))
            }
            views.append((view, criterionView))
            pointers.append(masks[i].withUnsafeMutableBufferPointer { $0.baseAddress! })
        }
        try pruningMasks(layers: views, selection: selection, threads: threads, into: pointers)
        _ = (weights, gradients)
        return withExtendedLifetime((weights, gradients)) { masks }
    }
}

let vectorCases: [VectorCase] = (try? VectorCase.loadAll()) ?? []

@Suite("Golden vectors from the independent numpy reference")
struct GoldenVectorTests {
    @Test("vectors are present")
    func present() {
        #expect(vectorCases.count > 300)
    }

    @Test("masks equal the reference", arguments: vectorCases)
    func masksEqualReference(_ c: VectorCase) throws {
        let masks = try c.run()
        for (i, layer) in c.layers.enumerated() {
            #expect(masks[i] == layer.mask, "layer \(i)")
        }
    }

    @Test("one thread and many threads give the same bytes", arguments: vectorCases.filter { $0.layers.count > 1 || $0.layers[0].rows > 2 })
    func threadIndependence(_ c: VectorCase) throws {
        let one = try c.run(threads: 1)
        #expect(try c.run(threads: 3) == one)
        #expect(try c.run(threads: 16) == one)
    }
}
