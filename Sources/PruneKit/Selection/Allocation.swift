/// Layer-wise sparsity allocation: per-layer sparsities whose pruned counts add up to exactly
/// floor(s * total weights), layers that matter more pruned less.
///
/// OWL (Yin et al. 2024) measures what matters by the layer's outlier ratio (the fraction of its
/// Wanda scores above M times their mean, `outlierRatio`); a sensitivity allocation (SBPF) by the
/// layer's output error at a probe sparsity. Either way the allocation is the same: importance
/// v_l scaled into [0, 2λ], sparsity s_l = c - v'_l with the shift c chosen so that the weighted
/// mean is the target, clipped to [s - λ, s + λ] ∩ [0, 1] (the shift found again after clipping),
/// then whole counts by largest remainder within each layer's bounds.
public struct AllocationResult: Sendable, Equatable {
    /// Entries to prune per layer; they add up to floor(s * sum of sizes).
    public var pruned: [Int]
    /// Sparsities to pass to a per-layer call: (pruned + 0.5) / size, so that floor(s * n) in IEEE
    /// double gives back `pruned` exactly (capped at 1 for a fully pruned layer).
    public var sparsities: [Double]
}

/// Allocates per-layer sparsities. The C function is `pk_allocate_sparsity`.
/// - Parameters:
///   - sizes: weights per layer (positive).
///   - importance: per layer, finite; higher = prune less (outlier ratio, sensitivity).
///   - sparsity: the global target in [0, 1].
///   - spread: λ, the largest distance of a layer's sparsity from the target, in [0, 1].
/// - Throws: `.invalidArgument` for bad values, or when the target cannot be met within the bounds.
public func allocateSparsity(sizes: [Int], importance: [Double], sparsity: Double, spread: Double) throws(PruneKitError) -> AllocationResult {
    guard !sizes.isEmpty, sizes.count == importance.count else {
        throw .invalidShape("sizes (\(sizes.count)) and importance (\(importance.count)) must be non-empty and of equal length")
    }
    guard sparsity >= 0, sparsity <= 1 else { throw .invalidArgument("sparsity must be in [0, 1], got \(sparsity)") }
    guard spread >= 0, spread <= 1 else { throw .invalidArgument("spread (lambda) must be in [0, 1], got \(spread)") }
    var total = 0
    for (l, n) in sizes.enumerated() {
        guard n > 0 else { throw .invalidShape("layer \(l) has size \(n); sizes must be positive") }
        let (sum, overflow) = total.addingReportingOverflow(n)
        guard !overflow else { throw .invalidShape("the sizes add up past Int64") }
        total = sum
    }
    for (l, v) in importance.enumerated() where !v.isFinite { throw .nonFinite("importance of layer \(l) is \(v)") }
    let target = prunedCount(groupSize: total, sparsity: sparsity)
    let lo = max(0, sparsity - spread), hi = min(1, sparsity + spread)
    let low = importance.min()!, high = importance.max()!
    let scaled = importance.map { high > low ? ($0 - low) / (high - low) * 2 * spread : 0 }
    // Per-layer whole-count bounds (within one weight of [lo, hi], so they always admit a count).
    let floors = sizes.map { Int((lo * Double($0)).rounded(.down)) }
    let ceilings = sizes.map { min($0, Int((hi * Double($0)).rounded(.up))) }
    let reachable = (floors.reduce(0, +), ceilings.reduce(0, +))
    guard reachable.0 <= target, target <= reachable.1 else {
        throw .invalidArgument("\(target) pruned weights cannot be allocated with every layer's sparsity in [\(lo), \(hi)] "
                               + "(reachable: \(reachable.0)...\(reachable.1))")
    }
    // The shift c with sum n_l clip(c - v'_l, lo, hi) = target, by bisection (the sum is monotone in c).
    func allocated(_ c: Double) -> Double {
        zip(sizes, scaled).reduce(0.0) { $0 + Double($1.0) * min(hi, max(lo, c - $1.1)) }
    }
    var a = lo, b = hi + 2 * spread
    for _ in 0..<200 {
        let mid = (a + b) / 2
        if allocated(mid) < Double(target) { a = mid } else { b = mid }
    }
    let exact = zip(sizes, scaled).map { Double($0.0) * min(hi, max(lo, b - $0.1)) }
    var pruned = (0..<sizes.count).map { l in min(ceilings[l], max(floors[l], Int(exact[l].rounded(.down)))) }
    // Whole counts: hand out the rest by largest remainder (ties by layer), within each ceiling;
    // or take back by smallest remainder within each floor.
    var rest = target - pruned.reduce(0, +)
    let order = (0..<sizes.count).sorted {
        let (ra, rb) = (exact[$0] - exact[$0].rounded(.down), exact[$1] - exact[$1].rounded(.down))
        return ra != rb ? ra > rb : $0 < $1
    }
    while rest != 0 {
        var moved = false
        for l in (rest > 0 ? order : order.reversed()) where rest != 0 {
            if rest > 0, pruned[l] < ceilings[l] { pruned[l] += 1; rest -= 1; moved = true }
            if rest < 0, pruned[l] > floors[l] { pruned[l] -= 1; rest += 1; moved = true }
        }
        if !moved { break }  // cannot happen: the target is within the reachable range
    }
    let sparsities = zip(pruned, sizes).map { $0.0 >= $0.1 ? 1.0 : (Double($0.0) + 0.5) / Double($0.1) }
    return AllocationResult(pruned: pruned, sparsities: sparsities)
}

/// OWL's layer outlier ratio: the fraction of the layer's scores (e.g. Wanda's) above `threshold`
/// times their mean. The C function is `pk_outlier_ratio`.
package func outlierRatio(weights: MatrixView, criterion: CriterionView, threshold: Double, threads: Int = 0) throws(PruneKitError) -> Double {
    guard threshold > 0, threshold.isFinite else { throw .invalidArgument("threshold must be positive, got \(threshold)") }
    let kernel = try ScoreKernel(weights: weights, criterion: criterion)
    let count = try checkedProduct(weights.rows, weights.cols, "weights")
    let scores = try ScratchBuffer<Float>(count: count)
    defer { keepAlive(scores) }
    try MaskEngine.scores(kernel: kernel, threads: threads, into: scores.base)
    var sum = 0.0
    for i in 0..<count { sum += Double(scores.base[i]) }
    let limit = threshold * sum / Double(count)
    var above = 0
    for i in 0..<count where Double(scores.base[i]) > limit { above += 1 }
    return Double(above) / Double(count)
}
