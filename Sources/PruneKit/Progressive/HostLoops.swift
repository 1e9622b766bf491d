/// Loops in which the library asks the host to evaluate candidates: progressive structured
/// pruning (C-SWAP) and sensitivity-based layer ratios (SBPF). The evaluation closures run on
/// the calling thread, one at a time, never after the function returns; an error they throw
/// ends the loop with the host's weights as they were before the call.

/// Options of `progressiveStructurePruning`. The C struct is `pk_progressive_options`.
public struct ProgressiveOptions: Sendable, Equatable {
    /// The fraction of all structures to prune, in [0, 1].
    public var targetRatio: Double
    /// Structures removed per step: max(1, floor(stepRatio * total)), in (0, 1].
    public var stepRatio: Double
    /// A step is accepted when the host's cost after it exceeds the dense cost by at most this.
    public var tolerance: Double

    public init(targetRatio: Double = 0.5, stepRatio: Double = 0.05, tolerance: Double = 0.01) {
        self.targetRatio = targetRatio
        self.stepRatio = stepRatio
        self.tolerance = tolerance
    }
}

/// Why a progressive loop ended. Raw values: `enum pk_progressive_stop`.
public enum ProgressiveStop: Int32, Sendable {
    case reachedTarget = 0
    /// Every structure left is protected or at a group's min_keep.
    case noAcceptableStep = 1
}

public struct ProgressiveResult: Sendable, Equatable {
    /// One byte per structure (groups concatenated), 1 = kept.
    public var keep: [UInt8]
    /// 1 for the structures of rolled-back steps.
    public var protected: [UInt8]
    public var pruned: Int
    public var evaluations: Int
    public var accepted: Int
    public var rejected: Int
    public var stop: ProgressiveStop
    public var baselineCost: Double
    public var finalCost: Double
}

/// C-SWAP-style progressive structured pruning without fine-tuning. The structures of all groups
/// are scored once (`structureSelection`'s scores, or the caller's) and ranked by (score, group,
/// index) ascending. The host's cost of the dense model is asked first (keep all ones); then each
/// step removes the next max(1, floor(stepRatio * total)) structures that are kept, not protected
/// and above their group's min_keep (fewer when the target is closer), sets them to zero in the
/// host's tensors (`applyStructures`) and asks the cost. A step whose cost exceeds the dense cost
/// by more than the tolerance is rolled back (the tensors as before the step) and its structures
/// are protected. The loop ends when floor(targetRatio * total) structures are pruned, or when no
/// candidate is left.
/// - Parameters:
///   - applying: Whether the loop zeroes (and restores) the structures in the members' tensors;
///     false leaves them untouched and the host evaluates the selection `keep` itself.
///   - evaluate: The host's cost (lower is better, e.g. 1 - mean cosine) of its model with the
///     tensors as they are now; `keep` is the selection being evaluated. A non-finite cost is an
///     error (`.nonFinite`); a thrown error ends the loop.
/// - Throws: the statuses of `pk_select_structures`, `.invalidArgument` for options out of range,
///   the evaluation's error. On any error every tensor is as it was before the call.
/// The C function is `pk_progressive_structures`.
package func progressiveStructurePruning(groups: [StructureGroupView], scoring: StructureOptions,
                                        scores given: UnsafeBufferPointer<Double>? = nil, options: ProgressiveOptions,
                                        applying: Bool = true, evaluate: (UnsafeBufferPointer<UInt8>) throws(PruneKitError) -> Double)
    throws(PruneKitError) -> ProgressiveResult {
    guard options.targetRatio >= 0, options.targetRatio <= 1 else {
        throw .invalidArgument("target_ratio must be in [0, 1], got \(options.targetRatio)")
    }
    guard options.stepRatio > 0, options.stepRatio <= 1 else {
        throw .invalidArgument("step_ratio must be in (0, 1], got \(options.stepRatio)")
    }
    guard options.tolerance.isFinite else { throw .invalidArgument("tolerance must be finite, got \(options.tolerance)") }
    guard !groups.isEmpty else { throw .invalidShape("no groups given") }
    var rankingOnly = scoring
    rankingOnly.mode = .perGroup
    rankingOnly.ratio = 0
    rankingOnly.stageValues = nil
    rankingOnly.multiple = 1
    let (scores, _) = try structureSelection(groups: groups, options: rankingOnly, scores: given)
    var counts: [Int] = [], offsets = [0]
    for (g, group) in groups.enumerated() {
        counts.append(try group.structureCount(label: "group \(g): "))
        offsets.append(offsets.last! + counts.last!)
    }
    let total = offsets.last!
    var groupOf = [Int](repeating: 0, count: total)
    for g in 0..<groups.count { for p in offsets[g]..<offsets[g + 1] { groupOf[p] = g } }
    let order = rankAscending(scores, Array(0..<total))
    let target = prunedCount(groupSize: total, sparsity: options.targetRatio)
    let stepSize = max(1, prunedCount(groupSize: total, sparsity: options.stepRatio))

    // The tensors as they were, for roll-backs and for errors.
    let backups = applying ? groups.map { $0.members.map { MemberBackup($0.tensor) } } : []
    func restore(_ g: Int) {
        guard applying else { return }
        for (m, member) in groups[g].members.enumerated() { backups[g][m].restore(into: member.tensor) }
    }
    var keep = [UInt8](repeating: 1, count: total), protected = [UInt8](repeating: 0, count: total)
    func applyAll(_ which: [Int]) throws(PruneKitError) {
        for g in which where applying {
            try keep.withUnsafeBufferPointer { k throws(PruneKitError) in try applyStructures(groups[g], keep: k.baseAddress! + offsets[g]) }
        }
    }
    var evaluations = 0
    func cost() throws(PruneKitError) -> Double {
        evaluations += 1
        let value = try keep.withUnsafeBufferPointer { k throws(PruneKitError) in try evaluate(k) }
        guard value.isFinite else { throw .nonFinite("the evaluation callback returned \(value) (evaluation \(evaluations))") }
        return value
    }
    var kept = counts, pruned = 0, accepted = 0, rejected = 0
    var stop = ProgressiveStop.reachedTarget
    do throws(PruneKitError) {
        let baseline = try cost()
        var final = baseline
        while pruned < target {
            var candidates: [Int] = []
            var taken = [Int](repeating: 0, count: groups.count)
            let want = min(stepSize, target - pruned)
            for p in order where candidates.count < want {
                let g = groupOf[p]
                guard keep[p] == 1, protected[p] == 0, kept[g] - taken[g] > groups[g].minKeep else { continue }
                candidates.append(p)
                taken[g] += 1
            }
            if candidates.isEmpty {
                stop = .noAcceptableStep
                break
            }
            let touched = (0..<groups.count).filter { taken[$0] > 0 }
            for p in candidates { keep[p] = 0 }
            try applyAll(touched)
            let value = try cost()
            if value - baseline <= options.tolerance {
                pruned += candidates.count
                for g in touched { kept[g] -= taken[g] }
                accepted += 1
                final = value
            } else {
                for p in candidates {
                    keep[p] = 1
                    protected[p] = 1
                }
                for g in touched { restore(g) }
                try applyAll(Array(0..<groups.count))
                rejected += 1
            }
        }
        return ProgressiveResult(keep: keep, protected: protected, pruned: pruned, evaluations: evaluations,
                                 accepted: accepted, rejected: rejected, stop: stop, baselineCost: baseline, finalCost: final)
    } catch {
        for g in 0..<groups.count { restore(g) }
        throw error
    }
}

/// C-SWAP-style progressive structured pruning over owned tensors (see the view form above for
/// the loop): the tensors are only read (scored); `evaluate` gets the selection of each step,
/// one flag per structure of each group (true = kept), and returns the host's cost of its model
/// with those structures removed (e.g. through `applyStructures` or `structureMask` on its own
/// copies).
/// - Parameter scores: nil (the structures are scored as `selectStructures` scores them) or one
///   score per structure, groups concatenated.
/// - Throws: the errors of `selectStructures`, `.invalidArgument` for options out of range,
///   `.nonFinite` for a non-finite cost, the evaluation's error.
/// The C function is `pk_progressive_structures`.
public func progressiveStructurePruning(_ groups: [StructureGroup], scoring: StructureOptions = .init(),
                                        scores: [Double]? = nil, options: ProgressiveOptions = .init(),
                                        evaluate: ([[Bool]]) throws(PruneKitError) -> Double) throws(PruneKitError)
    -> ProgressiveResult {
    try withGroupViews(groups, criterion: scoring.criterion) { views throws(PruneKitError) in
        let counts = try views.enumerated().map { (g, view) throws(PruneKitError) in try view.structureCount(label: "group \(g): ") }
        func run(_ given: UnsafeBufferPointer<Double>?) throws(PruneKitError) -> ProgressiveResult {
            try progressiveStructurePruning(groups: views, scoring: scoring, scores: given, options: options,
                                            applying: false) { keep throws(PruneKitError) in
                try evaluate(split(keep.map { $0 != 0 }, counts))
            }
        }
        guard let scores else { return try run(nil) }
        return try scores.withUnsafeBufferPointer { b throws(PruneKitError) in try run(b) }
    }
}

/// A copy of a tensor's elements (row by row, its stride respected).
struct MemberBackup {
    let bytes: [UInt8]
    init(_ tensor: MatrixView) {
        let rowBytes = tensor.cols * tensor.dtype.size
        var out = [UInt8](repeating: 0, count: tensor.rows * rowBytes)
        out.withUnsafeMutableBytes { o in
            for r in 0..<tensor.rows { (o.baseAddress! + r * rowBytes).copyMemory(from: tensor.rowAddress(r), byteCount: rowBytes) }
        }
        bytes = out
    }

    func restore(into tensor: MatrixView) {
        let rowBytes = tensor.cols * tensor.dtype.size
        bytes.withUnsafeBytes { b in
            for r in 0..<tensor.rows { tensor.rowAddress(r).copyMemory(from: b.baseAddress! + r * rowBytes, byteCount: rowBytes) }
        }
    }
}

/// Sensitivity-based per-layer ratios (SBPF). The host reports the damage (a cost, e.g. the loss
/// increase) of each layer pruned alone at each probe ratio; the damage at ratio 0 is 0. Layer l's
/// curve is piecewise linear in pruned weights through (0, 0) and (floor(r_j * n_l), d_lj). The
/// pruned counts are allocated greedily, the cheapest next segment (damage per weight, ties by
/// layer) first, each layer's segments in order, the last one partly, so that they sum to exactly
/// floor(target * sum n_l) weights. The ratios returned are the smallest doubles r with
/// floor(r * n_l) equal to each count.
/// - Parameter damage: (layer, probe ratio) -> damage; asked layer by layer, probes in order.
/// - Throws: `.invalidArgument` (probes not increasing in (0, 1], a target outside [0, 1] or above
///   what the largest probe allows), `.invalidShape` (sizes), `.nonFinite` (a damage), the
///   closure's error.
/// The C function is `pk_sensitivity_ratios`.
public func sensitivityRatios(layerSizes: [Int], probes: [Double], target: Double,
                              damage: (Int, Double) throws(PruneKitError) -> Double) throws(PruneKitError)
    -> (ratios: [Double], counts: [Int]) {
    guard !layerSizes.isEmpty else { throw .invalidShape("no layers given") }
    for (l, n) in layerSizes.enumerated() where n <= 0 { throw .invalidShape("layer \(l) has \(n) weights") }
    guard !probes.isEmpty else { throw .invalidShape("no probe ratios given") }
    for (j, r) in probes.enumerated() where !(r > (j == 0 ? 0 : probes[j - 1]) && r <= 1) {
        throw .invalidArgument("probe ratios must increase within (0, 1]: probe \(j) is \(r)")
    }
    guard target >= 0, target <= 1 else { throw .invalidArgument("target must be in [0, 1], got \(target)") }
    let total = layerSizes.reduce(0, +)
    let goal = prunedCount(groupSize: total, sparsity: target)
    let room = layerSizes.reduce(0) { $0 + prunedCount(groupSize: $1, sparsity: probes.last!) }
    guard goal <= room else {
        throw .invalidArgument("target \(target) prunes \(goal) weights; the largest probe ratio \(probes.last!) allows \(room)")
    }
    var curves: [[(count: Int, damage: Double)]] = []
    for (l, n) in layerSizes.enumerated() {
        var points = [(count: 0, damage: 0.0)]
        for r in probes {
            let d = try damage(l, r)
            guard d.isFinite else { throw .nonFinite("the damage of layer \(l) at ratio \(r) is \(d)") }
            points.append((prunedCount(groupSize: n, sparsity: r), d))
        }
        curves.append(points)
    }
    var counts = [Int](repeating: 0, count: layerSizes.count)
    var next = [Int](repeating: 1, count: layerSizes.count)
    var remaining = goal
    while remaining > 0 {
        var best: (layer: Int, slope: Double)?
        for l in 0..<layerSizes.count {
            // Skip segments that add no weights.
            while next[l] < curves[l].count, curves[l][next[l]].count == curves[l][next[l] - 1].count { next[l] += 1 }
            guard next[l] < curves[l].count else { continue }
            let a = curves[l][next[l] - 1], b = curves[l][next[l]]
            let slope = (b.damage - a.damage) / Double(b.count - a.count)
            if best == nil || slope < best!.slope { best = (l, slope) }
        }
        guard let chosen = best else { throw PruneKitError(.internal, "sensitivity allocation ran out of segments") }
        let l = chosen.layer
        let length = curves[l][next[l]].count - curves[l][next[l] - 1].count
        let take = min(length, remaining)
        counts[l] += take
        remaining -= take
        next[l] += 1
    }
    let ratios = (0..<layerSizes.count).map { l -> Double in
        let n = layerSizes[l], k = counts[l]
        var r = Double(k) / Double(n)
        while prunedCount(groupSize: n, sparsity: r) < k { r = r.nextUp }
        while r > 0, prunedCount(groupSize: n, sparsity: r.nextDown) >= k { r = r.nextDown }
        return r
    }
    return (ratios, counts)
}
