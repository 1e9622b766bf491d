/// Structure selection: the plan every structured call checks first, and the four modes that
/// choose which structures go from their scores (ranked by `rankAscending`).

/// Checks a group and its keep bytes; returns the structure count and the kept indices.
func checkSelection(_ group: StructureGroupView, keep: UnsafePointer<UInt8>) throws(PruneKitError) -> (n: Int, kept: [Int]) {
    let n = try group.structureCount(label: "group: ")
    try checkMaskBytes(keep, count: n)
    return (n, (0..<n).filter { keep[$0] != 0 })
}

/// What every structured call checks first: the options, and per group its structure count,
/// minimum, stage and what the criterion needs.
struct StructurePlan {
    let counts: [Int]
    let offsets: [Int]
    var total: Int { offsets.last! }

    init(groups: [StructureGroupView], options: StructureOptions, needsScores: Bool) throws(PruneKitError) {
        guard !groups.isEmpty else { throw .invalidShape("group_count must be positive") }
        guard options.multiple >= 1 else { throw .invalidArgument("multiple must be >= 1, got \(options.multiple)") }
        guard options.threads >= 0 else { throw .invalidArgument("num_threads must be >= 0, got \(options.threads)") }
        let values = options.stageValues ?? [options.ratio]
        guard !values.isEmpty else { throw .invalidShape("stage_count must be positive when stage values are given") }
        for (i, v) in values.enumerated() {
            let name = options.stageValues == nil ? "ratio" : "stage value \(i)"
            if options.mode == .threshold {
                guard v.isFinite else { throw .nonFinite("\(name) (threshold) is \(v)") }
            } else {
                guard v >= 0, v <= 1 else { throw .invalidArgument("\(name) must be in [0, 1], got \(v)") }
            }
        }
        var counts: [Int] = []
        for (g, group) in groups.enumerated() {
            let label = "group \(g): "
            let n = try group.structureCount(label: label)
            guard group.minKeep >= 0, group.minKeep <= n else {
                throw .invalidArgument("\(label)min_keep \(group.minKeep) is outside 0...\(n) (its structure count)")
            }
            guard group.stage >= 0, group.stage < values.count else {
                throw .invalidArgument(options.stageValues == nil
                    ? "\(label)stage \(group.stage) needs stage values (without them every group is stage 0)"
                    : "\(label)stage \(group.stage) is outside the \(values.count) stage values")
            }
            if needsScores {
                switch options.criterion {
                case .l1, .l2:
                    guard group.members.contains(where: { $0.scored }) else {
                        throw .invalidArgument("\(label)no member is scored")
                    }
                case .meanAbsActivation, .nonzeroFraction:
                    guard let activity = group.activity else {
                        throw .invalidArgument("\(label)the activation criteria need the group's activation statistics")
                    }
                    guard activity.count % n == 0, activity.count > 0 else {
                        throw .invalidShape("\(label)activation statistics have \(activity.count) features, not a multiple of its \(n) structures")
                    }
                }
            }
            counts.append(n)
        }
        self.init(counts: counts)
    }

    /// A plan over groups of the given sizes (checked by the caller).
    init(counts: [Int]) {
        self.counts = counts
        var offsets = [0]
        for n in counts { offsets.append(offsets.last! + n) }
        self.offsets = offsets
    }
}

/// The kept count `keep` rounded up to a multiple, capped at n.
@inline(__always)
func roundedKeep(_ keep: Int, multiple: Int, n: Int) -> Int {
    min(n, (keep + multiple - 1) / multiple * multiple)
}

/// Which structures stay (1) or go (0), by the options' mode, from scores already computed.
/// `scores` has `plan.total` finite values; the result has as many flags.
func selectStructures(scores: [Double], plan: StructurePlan, minKeep: [Int], stages: [Int],
                      options: StructureOptions) throws(PruneKitError) -> [UInt8] {
    for (i, v) in scores.enumerated() where !v.isFinite {
        throw .nonFinite("structure score \(i) is \(v)")
    }
    let values = options.stageValues ?? [options.ratio]
    let groupCount = plan.counts.count
    // How many structures each group keeps.
    var keep = [Int](repeating: 0, count: groupCount)
    switch options.mode {
    case .perGroup:
        for g in 0..<groupCount {
            let n = plan.counts[g]
            keep[g] = roundedKeep(n - prunedCount(groupSize: n, sparsity: values[stages[g]]), multiple: options.multiple, n: n)
            guard keep[g] >= minKeep[g] else {
                throw .invalidArgument("group \(g): min_keep \(minKeep[g]) makes the target impossible (the ratio keeps \(keep[g]) of \(n))")
            }
        }
    case .uniform:
        for stage in Set(stages).sorted() {
            let members = (0..<groupCount).filter { stages[$0] == stage }
            let smallest = members.map { plan.counts[$0] }.min()!
            let common = roundedKeep(smallest - prunedCount(groupSize: smallest, sparsity: values[stage]),
                                     multiple: options.multiple, n: smallest)
            for g in members {
                guard common >= minKeep[g] else {
                    throw .invalidArgument("group \(g): min_keep \(minKeep[g]) makes the target impossible (stage \(stage) keeps \(common) in every group)")
                }
                keep[g] = common
            }
        }
    case .global:
        var groupOf = [Int](repeating: 0, count: plan.total)
        for g in 0..<groupCount { for p in plan.offsets[g]..<plan.offsets[g + 1] { groupOf[p] = g } }
        for stage in Set(stages).sorted() {
            let members = (0..<groupCount).filter { stages[$0] == stage }
            let total = members.reduce(0) { $0 + plan.counts[$1] }
            let target = prunedCount(groupSize: total, sparsity: values[stage])
            let room = members.reduce(0) { $0 + plan.counts[$1] - minKeep[$1] }
            guard room >= target else {
                throw .invalidArgument("stage \(stage): the minimum kept per group makes the target impossible (\(target) of \(total) structures to prune, at most \(room) can go)")
            }
            // Rank the stage's structures by (score, group, index) and prune from the bottom,
            // skipping groups that are down to their minimum.
            // Position in the concatenation orders (group, index) too.
            var positions: [Int] = []
            positions.reserveCapacity(total)
            for g in members { positions += plan.offsets[g]..<plan.offsets[g + 1] }
            var pruned = [Int](repeating: 0, count: groupCount)
            var done = 0
            for entry in rankAscending(scores, positions) where done < target {
                let g = groupOf[entry]
                if pruned[g] < plan.counts[g] - minKeep[g] {
                    pruned[g] += 1
                    done += 1
                }
            }
            for g in members { keep[g] = roundedKeep(plan.counts[g] - pruned[g], multiple: options.multiple, n: plan.counts[g]) }
        }
    case .threshold:
        for g in 0..<groupCount {
            let o = plan.offsets[g], n = plan.counts[g]
            let above = (0..<n).filter { scores[o + $0] >= values[stages[g]] }.count
            keep[g] = roundedKeep(Swift.max(above, minKeep[g]), multiple: options.multiple, n: n)
        }
    }
    // Each group keeps its `keep` best by (score, index).
    var flags = [UInt8](repeating: 1, count: plan.total)
    for g in 0..<groupCount {
        let o = plan.offsets[g], n = plan.counts[g]
        let prune = n - keep[g]
        guard prune > 0 else { continue }
        for p in rankAscending(scores, Array(o..<(o + n))).prefix(prune) { flags[p] = 0 }
    }
    return flags
}

/// Scores (computed, or the caller's) and keep flags of every group's structures, concatenated
/// in group order. Checks everything first.
package func structureSelection(groups: [StructureGroupView], options: StructureOptions,
                               scores given: UnsafeBufferPointer<Double>? = nil) throws(PruneKitError) -> (scores: [Double], keep: [UInt8]) {
    let plan = try StructurePlan(groups: groups, options: options, needsScores: given == nil)
    let scores: [Double]
    if let given {
        guard given.count == plan.total else {
            throw .invalidShape("scores have \(given.count) entries, the groups have \(plan.total) structures")
        }
        var values: [Double] = []
        for g in 0..<plan.counts.count {
            var part = Array(given[plan.offsets[g]..<plan.offsets[g + 1]])
            for (i, v) in part.enumerated() where !v.isFinite { throw .nonFinite("group \(g): score \(i) is \(v)") }
            normalize(&part, options.normalization)
            values += part
        }
        scores = values
    } else {
        scores = try computeStructureScores(groups: groups, counts: plan.counts, options: options)
    }
    let keep = try selectStructures(scores: scores, plan: plan, minKeep: groups.map(\.minKeep),
                                    stages: groups.map(\.stage), options: options)
    return (scores, keep)
}
