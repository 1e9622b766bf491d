/// How important each weight is. Every criterion computes its score as one float32 operation on
/// float32 inputs, so an independent implementation reproduces scores bit for bit.
/// Variants are parameters, not new code paths.
public enum Criterion: Sendable {
    /// |w|.
    case magnitude
    /// A uniform draw in [0, 1) per entry from the counter-based generator `randomScore(seed:position:)`.
    case random(seed: UInt64)
    /// Wanda: |w| * featureNorms[col], the per-input-feature L2 norms of the calibration
    /// activations (`ActivationStatistics.l2Norm()` converted to Float).
    case wanda(featureNorms: [Float])
    /// STADE: |w| * featureStd[col], the per-input-feature standard deviations
    /// (`ActivationStatistics.standardDeviation()` converted to Float).
    case stade(featureStd: [Float])
    /// First-order Taylor: |w * g| with the gradient of the same shape.
    case taylor(gradient: any MatrixRepresentable)
    /// The matrix holds scores the caller computed (signed; higher is kept).
    case scores
}

/// A criterion over borrowed memory, as the C layer and the engine see it.
package enum CriterionView: @unchecked Sendable {
    case magnitude
    case random(seed: UInt64)
    case wanda(featureValues: UnsafeBufferPointer<Float>)
    case stade(featureValues: UnsafeBufferPointer<Float>)
    case taylor(gradient: MatrixView)
    case scores

    var name: String {
        switch self {
        case .magnitude: "magnitude"
        case .random: "random"
        case .wanda: "wanda"
        case .stade: "stade"
        case .taylor: "taylor"
        case .scores: "scores"
        }
    }
}

extension Criterion {
    /// Lends the criterion's arrays to `body` as a `CriterionView`.
    func withView<R>(_ body: (CriterionView) throws(PruneKitError) -> R) throws(PruneKitError) -> R {
        switch self {
        case .magnitude: return try body(.magnitude)
        case .random(let seed): return try body(.random(seed: seed))
        case .scores: return try body(.scores)
        case .wanda(let values), .stade(let values):
            let isWanda = if case .wanda = self { true } else { false }
            return try values.withUnsafeBufferPointer { buffer throws(PruneKitError) in
                try body(isWanda ? .wanda(featureValues: buffer) : .stade(featureValues: buffer))
            }
        case .taylor(let gradient):
            return try gradient.withMatrixView { view throws(PruneKitError) in try body(.taylor(gradient: view)) }
        }
    }
}

/// The documented random score of the entry at `position` (row * cols + col): SplitMix64's
/// finaliser over seed + (position + 1) * golden gamma, top 24 bits scaled to [0, 1).
@inline(__always)
public func randomScore(seed: UInt64, position: UInt64) -> Float {
    var z = seed &+ (position &+ 1) &* 0x9E37_79B9_7F4A_7C15
    z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
    z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
    z ^= z >> 31
    return Float(z >> 40) * 0x1p-24
}
