// Swift host: the idiomatic API, no raw pointers.
//   swift run prune-example
import PruneKit

struct Generator {
    var state: UInt64 = 0x9E37_79B9_7F4A_7C15
    mutating func uniform() -> Float {
        state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
        return Float(state >> 40) * 0x1p-24 * 2 - 1
    }
}

var gen = Generator()
do {
    let (rows, cols) = (64, 256)
    var weights = try Matrix<Float>(rows: rows, cols: cols, values: (0..<(rows * cols)).map { _ in gen.uniform() })
    var stats = try ActivationStatistics(features: cols)
    for _ in 0..<4 {
        let batch = try Matrix<Float>(rows: 32, cols: cols, values: (0..<(32 * cols)).map { i in gen.uniform() * Float(1 + i % 8) })
        try stats.accumulate(batch)
    }
    let mask = try pruningMask(for: weights, criterion: .wanda(featureNorms: stats.l2Norm().asFloat32),
                               selection: .nm(n: 2, m: 4))
    try applyMask(mask, to: &weights)
    print("Swift: \(stats.count) calibration tokens, 2:4 Wanda mask, sparsity \(mask.sparsity)")
    _ = try pruningMask(for: weights, criterion: .magnitude, selection: .perRow(sparsity: 1.5))
} catch {
    print("Swift: caught as expected: \(error)")
}
