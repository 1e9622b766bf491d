import CPruneKitShims

/// Structured pruning: the host declares groups of tensors that share one structural axis
/// (the rows of one layer, the columns of the next, the entries of a bias or batch-norm vector,
/// the blocks of rows of q/k/v that make a head); PruneKit scores each structure, selects which
/// go, and compacts or masks every member alike.
///
/// Raw values of the enums are pinned to include/prunekit.h.

/// Which part of a member tensor a structure is.
public enum StructureAxis: Sendable, Equatable {
    /// Structure i is rows [i * span, (i + 1) * span): output channels (span 1), a head's rows of
    /// q, k or v (span = head dim).
    case rows(span: Int)
    /// Structure i is columns [i * span, (i + 1) * span): input channels of the next layer
    /// (span 1; kh * kw for a conv viewed as [out, in * kh * kw]), a head's columns of the
    /// output projection, the entries of a vector viewed as 1 x n.
    case cols(span: Int)
    /// Structure (i, j) is the block of rows [i * r, (i + 1) * r) and columns [j * c, (j + 1) * c)
    /// (the last block row and column may be smaller), numbered i * ceil(cols / c) + j.
    case blocks(rows: Int, cols: Int)

    /// The number of structures a rows x cols tensor has along this axis, or an error.
    func structureCount(rows: Int, cols: Int, label: String) throws(PruneKitError) -> Int {
        switch self {
        case .rows(let span):
            guard span > 0 else { throw .invalidArgument("\(label)span must be positive, got \(span)") }
            guard rows % span == 0 else {
                throw .invalidShape("\(label)\(rows) rows are not a whole number of structures of \(span) rows")
            }
            return rows / span
        case .cols(let span):
            guard span > 0 else { throw .invalidArgument("\(label)span must be positive, got \(span)") }
            guard cols % span == 0 else {
                throw .invalidShape("\(label)\(cols) columns are not a whole number of structures of \(span) columns")
            }
            return cols / span
        case .blocks(let r, let c):
            guard r > 0, c > 0 else { throw .invalidArgument("\(label)block size must be positive, got \(r) x \(c)") }
            return ((rows + r - 1) / r) * ((cols + c - 1) / c)
        }
    }

    /// The extent along the axis ("rows", "columns") for messages.
    var name: String {
        switch self {
        case .rows: "rows"
        case .cols: "columns"
        case .blocks: "blocks"
        }
    }
}

/// How a structure's score comes from its entries. Raw values: `enum pk_structure_criterion`.
public enum StructureCriterion: Int32, Sendable, CaseIterable {
    /// The sum over the structure's entries of each scored member's entry score (with the
    /// magnitude criterion the L1 norm; with Wanda the activation-weighted L1 norm; with Taylor
    /// the summed |w * g|; a batch-norm scale vector as the only scored member gives |gamma|).
    case l1 = 0
    /// The square root of the sum of squared entry scores (the L2 norm for magnitude).
    case l2 = 1
    /// The mean absolute activation of the structure's outputs, from the group's statistics.
    case meanAbsActivation = 2
    /// The fraction of the structure's output activations that are non-zero (1 - APoZ).
    case nonzeroFraction = 3
}

/// How the scored members' values of a structure combine. Raw values: `enum pk_reduction`.
public enum StructureReduction: Int32, Sendable, CaseIterable {
    case sum = 0, mean = 1, max = 2
}

/// How a group's scores are scaled before selection (so layers of different scales can be
/// ranked together). A zero divisor leaves the scores as they are. Raw values: `enum pk_normalization`.
public enum StructureNormalization: Int32, Sendable, CaseIterable {
    case none = 0
    /// Divide by the group's mean score.
    case mean = 1
    /// Divide by the group's largest score.
    case max = 2
    /// Divide by the group's score sum.
    case sum = 3
    /// (score - mean) / standard deviation (population).
    case standard = 4
}

/// Which structures go. Raw values: `enum pk_structure_mode`.
public enum StructureMode: Int32, Sendable, CaseIterable {
    /// Each group prunes floor(ratio * n) of its n structures.
    case perGroup = 0
    /// The groups of a stage are ranked together by (score, group, index): floor(ratio * total)
    /// are pruned, each group keeping at least its minimum.
    case global = 1
    /// Every group of a stage keeps the same count: n_min - floor(ratio * n_min), n_min the
    /// smallest group of the stage.
    case uniform = 2
    /// Structures scoring below the stage's value are pruned; each group keeps at least its
    /// minimum (its best ones).
    case threshold = 3
}

/// Options of structure scoring and selection. The C struct is `pk_structure_options`.
public struct StructureOptions: Sendable {
    public var criterion: StructureCriterion
    public var reduction: StructureReduction
    public var normalization: StructureNormalization
    public var mode: StructureMode
    /// The fraction pruned (the threshold in `.threshold` mode) of every stage that
    /// `stageValues` does not give.
    public var ratio: Double
    /// One value per stage (ratio, or threshold in `.threshold` mode); nil: every stage uses `ratio`.
    public var stageValues: [Double]?
    /// Kept counts are rounded up to a multiple of this (capped at the group's size).
    public var multiple: Int
    /// Worker threads, 0 = one per CPU. Results never depend on it.
    public var threads: Int

    public init(criterion: StructureCriterion = .l2, reduction: StructureReduction = .sum,
                normalization: StructureNormalization = .none, mode: StructureMode = .perGroup,
                ratio: Double = 0.5, stageValues: [Double]? = nil, multiple: Int = 1, threads: Int = 0) {
        self.criterion = criterion
        self.reduction = reduction
        self.normalization = normalization
        self.mode = mode
        self.ratio = ratio
        self.stageValues = stageValues
        self.multiple = multiple
        self.threads = threads
    }
}

/// A member of a group over borrowed memory, as the C layer and the engine see it.
public struct StructureMemberView: @unchecked Sendable {
    public var tensor: MatrixView
    public var axis: StructureAxis
    /// Whether the member's entries count towards the structure's score.
    public var scored: Bool
    public var criterion: CriterionView

    public init(tensor: MatrixView, axis: StructureAxis, scored: Bool = true, criterion: CriterionView = .magnitude) {
        self.tensor = tensor
        self.axis = axis
        self.scored = scored
        self.criterion = criterion
    }
}

/// A group over borrowed memory: tensors that share one structural axis.
public struct StructureGroupView: @unchecked Sendable {
    public var members: [StructureMemberView]
    /// Structures this group always keeps (global and threshold selection; an error elsewhere
    /// when the target would keep fewer).
    public var minKeep: Int
    /// The stage: groups of one stage are ranked together (global, uniform) and share a value.
    public var stage: Int
    /// Per-feature activity of the structures' outputs for the activation criteria: mean |x|
    /// (`ActivationStatistics.meanAbsolute()`) or the non-zero fraction, features = structures * k.
    public var activity: [Double]?

    public init(members: [StructureMemberView], minKeep: Int = 0, stage: Int = 0, activity: [Double]? = nil) {
        self.members = members
        self.minKeep = minKeep
        self.stage = stage
        self.activity = activity
    }

    /// The number of structures, checked to agree across members.
    public func structureCount(label: String = "") throws(PruneKitError) -> Int {
        guard !members.isEmpty else { throw .invalidShape("\(label)has no members") }
        var count = -1
        for (m, member) in members.enumerated() {
            let n = try member.axis.structureCount(rows: member.tensor.rows, cols: member.tensor.cols,
                                                   label: "\(label)member \(m): ")
            if count >= 0, n != count {
                throw .invalidShape(
                    "\(label)members disagree along the axis: member \(m) has \(n) structures (\(member.tensor.rows) x \(member.tensor.cols), \(member.axis.name)), member 0 has \(count)")
            }
            count = n
        }
        return count
    }
}

/// Checks a group and its keep bytes; returns the structure count and the kept indices.
func checkSelection(_ group: StructureGroupView, keep: UnsafePointer<UInt8>) throws(PruneKitError) -> (n: Int, kept: [Int]) {
    let n = try group.structureCount(label: "group: ")
    try checkMaskBytes(keep, count: n)
    return (n, (0..<n).filter { keep[$0] != 0 })
}

// MARK: - Scoring

/// Rows handled per task when column sums are split across threads: fixed, so that the order of
/// additions (and so the result) does not depend on the thread count.
let structureRowChunk = 64

/// Sum of `x[j]` (power 1: |x[j]|; power 2: x[j]^2) in float64 with eight fixed accumulators.
@inline(__always)
func segmentSum(_ x: UnsafePointer<Float>, count: Int, squared: Bool) -> Double {
    var a = SIMD8<Double>()
    var j = 0
    if squared {
        while j + 8 <= count {
            let v = SIMD8<Double>(SIMD8<Float>(UnsafeRawPointer(x + j).loadUnaligned(as: SIMD8<Float>.self)))
            a += v * v
            j += 8
        }
    } else {
        while j + 8 <= count {
            let bits = UnsafeRawPointer(x + j).loadUnaligned(as: SIMD8<UInt32>.self) & 0x7FFF_FFFF
            a += SIMD8<Double>(unsafeBitCast(bits, to: SIMD8<Float>.self))
            j += 8
        }
    }
    var tail = 0.0
    while j < count {
        let v = Double(x[j])
        tail += squared ? v * v : Swift.abs(v)
        j += 1
    }
    let half = a.lowHalf + a.highHalf
    let quarter = half.lowHalf + half.highHalf
    return (quarter[0] + quarter[1]) + tail
}

/// One member's sums over each structure (of |s| or s^2 for entry scores s), into `sums`
/// (structure count doubles, overwritten). Rows are taken in fixed chunks (64 rows, or one block
/// row) whose partial sums combine in chunk order, so the result does not depend on threads.
///
/// `wide`: use the AVX2 kernels where the CPU has them (the results are the same bit for bit;
/// tests compare both paths).
func memberStructureSums(_ member: StructureMemberView, structures n: Int, squared: Bool, threads: Int,
                         label: String, into sums: UnsafeMutablePointer<Double>,
                         wide: Bool = wideKernels) throws(PruneKitError) {
    let kernel = try ScoreKernel(weights: member.tensor, criterion: member.criterion, label: label)
    let rows = kernel.rows, cols = kernel.cols
    let chunkRows: Int, width: Int
    switch member.axis {
    case .rows: (chunkRows, width) = (structureRowChunk, 0)
    case .cols: (chunkRows, width) = (structureRowChunk, cols)
    case .blocks(let r, let c): (chunkRows, width) = (r, (cols + c - 1) / c)
    }
    let chunks = (rows + chunkRows - 1) / chunkRows
    let workers = resolveThreads(threads, work: chunks)
    let partials = try ScratchBuffer<Double>(repeating: 0, count: chunks * width)
    let rowSums = try ScratchBuffer<Double>(repeating: 0, count: width == 0 ? rows : 0)
    let slots = if case .cols = member.axis { 4 } else { 1 }   // column sums take four rows at once
    let scratch = try ScratchBuffer<Float>(count: workers * slots * 3 * cols)
    let bad = try ScratchBuffer<Int>(repeating: Int.max, count: workers)
    defer { withExtendedLifetime((partials, rowSums, scratch, bad)) {} }
    let axis = member.axis
    // Magnitude needs no score buffer: |w| and w^2 come straight from the (float32) row.
    let direct: Bool = if case .magnitude = kernel.kind { true } else { false }
    parallelFor(workers: workers) { worker in
        /// Row r's entry scores (in scratch slot 0...3), or nil (and the row recorded) when one
        /// is not finite.
        /// With `checked: false` (magnitude, wide kernels) the row is returned as it is: the wide
        /// kernel that sums it reports non-finite entries, and the caller records the row.
        func entries(_ r: Int, _ slot: Int = 0, checked: Bool = true) -> UnsafePointer<Float>? {
            let s = scratch.base + (worker * slots + slot) * 3 * cols
            let conv = s + 2 * cols
            if direct {
                let w = kernel.weights.floats(row: r, count: cols, scratch: s)
                if !checked { return w }
                var flags: UInt32 = 0
                for j in 0..<cols { flags |= nonFiniteFlag(w[j].bitPattern) }
                if flags & 0x8000_0000 == 0 { return w }
            } else if kernel.score(row: r, count: cols, into: conv, scratch: s) < 0x7F80_0000 {
                return UnsafePointer(conv)
            }
            bad.base[worker] = min(bad.base[worker], r)
            return nil
        }
        /// The first of rows r ..< r + count with a non-finite entry score, recorded (the wide
        /// kernels only say that one of them has one).
        func recordFirstBad(_ r: Int, _ count: Int) {
            for row in r..<(r + count) where entries(row) == nil { return }
        }
        for chunk in partition(chunks, workers: workers, worker: worker) {
            let acc = partials.base + chunk * width
            var r = chunk * chunkRows
            let end = min(rows, (chunk + 1) * chunkRows)
            if case .cols = axis {
                // Four rows at a time: acc[j] += (a^2 + b^2) + (c^2 + d^2), a fixed order.
                // The same sums by the AVX2 kernel; magnitude rows are checked as they are summed.
                while wide, r + 4 <= end {
                    defer { r += 4 }
                    guard let a = entries(r, checked: !direct), let b = entries(r + 1, 1, checked: !direct),
                          let c = entries(r + 2, 2, checked: !direct), let d = entries(r + 3, 3, checked: !direct) else { continue }
                    let flags = prunekit_wide_column_sums4(a, b, c, d, acc, cols, squared ? 1 : 0)
                    if direct, flags & 0x8000_0000 != 0 { recordFirstBad(r, 4) }
                }
                while r + 4 <= end {
                    guard let a = entries(r), let b = entries(r + 1, 1), let c = entries(r + 2, 2), let d = entries(r + 3, 3) else {
                        r += 4
                        continue
                    }
                    if squared {
                        for j in 0..<cols {
                            let (x, y, z, w) = (Double(a[j]), Double(b[j]), Double(c[j]), Double(d[j]))
                            acc[j] += (x * x + y * y) + (z * z + w * w)
                        }
                    } else {
                        for j in 0..<cols {
                            acc[j] += (Double(Swift.abs(a[j])) + Double(Swift.abs(b[j]))) + (Double(Swift.abs(c[j])) + Double(Swift.abs(d[j])))
                        }
                    }
                    r += 4
                }
            }
            if wide, case .rows = axis {
                while r < end {
                    defer { r += 1 }
                    guard let x = entries(r, checked: !direct) else { continue }
                    var flags: UInt32 = 0
                    rowSums.base[r] = prunekit_wide_sum(x, cols, squared ? 1 : 0, &flags)
                    if direct, flags & 0x8000_0000 != 0 { recordFirstBad(r, 1) }
                }
            }
            while r < end {
                defer { r += 1 }
                guard let x = entries(r) else { continue }
                switch axis {
                case .rows:
                    rowSums.base[r] = segmentSum(x, count: cols, squared: squared)
                case .cols:
                    if squared {
                        for j in 0..<cols { let v = Double(x[j]); acc[j] += v * v }
                    } else {
                        for j in 0..<cols { acc[j] += Double(Swift.abs(x[j])) }
                    }
                case .blocks(_, let c):
                    var b = 0, j = 0
                    while j < cols {
                        let w = min(c, cols - j)
                        if wide {
                            var flags: UInt32 = 0   // already checked
                            acc[b] += prunekit_wide_sum(x + j, w, squared ? 1 : 0, &flags)
                        } else {
                            acc[b] += segmentSum(x + j, count: w, squared: squared)
                        }
                        j += w
                        b += 1
                    }
                }
            }
        }
    }
    let firstBad = (0..<workers).map { bad.base[$0] }.min()!
    if firstBad != Int.max {
        let s = try ScratchBuffer<Float>(count: 3 * cols)
        defer { withExtendedLifetime(s) {} }
        throw kernel.nonFiniteError(row: firstBad, scratch: s.base, scores: s.base + 2 * cols)
    }
    sums.initialize(repeating: 0, count: n)
    switch axis {
    case .rows(let span):
        for r in 0..<rows { sums[r / span] += rowSums.base[r] }
    case .cols(let span):
        for chunk in 1..<max(chunks, 1) {
            let p = partials.base + chunk * cols
            for j in 0..<cols { partials.base[j] += p[j] }
        }
        for j in 0..<cols { sums[j / span] += partials.base[j] }
    case .blocks:
        sums.update(from: partials.base, count: n)
    }
}

// MARK: - Groups: validation, scores, selection

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

/// Scores of every group's structures after normalisation, concatenated in group order.
func computeStructureScores(groups: [StructureGroupView], plan: StructurePlan,
                            options: StructureOptions) throws(PruneKitError) -> [Double] {
    var scores = [Double](repeating: 0, count: plan.total)
    for (g, group) in groups.enumerated() {
        let n = plan.counts[g], o = plan.offsets[g]
        var values = [Double](repeating: 0, count: n)
        switch options.criterion {
        case .l1, .l2:
            let squared = options.criterion == .l2
            let sums = try ScratchBuffer<Double>(count: n)
            defer { withExtendedLifetime(sums) {} }
            var scoredCount = 0
            for (m, member) in group.members.enumerated() where member.scored {
                try memberStructureSums(member, structures: n, squared: squared, threads: options.threads,
                                        label: "group \(g), member \(m): ", into: sums.base)
                for i in 0..<n {
                    let v = squared ? sums.base[i].squareRoot() : sums.base[i]
                    switch options.reduction {
                    case .sum, .mean: values[i] += v
                    case .max: values[i] = scoredCount == 0 ? v : Swift.max(values[i], v)
                    }
                }
                scoredCount += 1
            }
            if options.reduction == .mean { for i in 0..<n { values[i] /= Double(scoredCount) } }
        case .meanAbsActivation, .nonzeroFraction:
            let activity = group.activity!
            let k = activity.count / n
            for (j, a) in activity.enumerated() {
                guard a.isFinite, a >= 0 else { throw .nonFinite("group \(g): activation statistic \(j) is \(a)") }
                values[j / k] += a
            }
            for i in 0..<n { values[i] /= Double(k) }
        }
        for i in 0..<n where !values[i].isFinite {
            throw .nonFinite("group \(g): the score of structure \(i) overflows (\(values[i]))")
        }
        normalize(&values, options.normalization)
        for i in 0..<n { scores[o + i] = values[i] }
    }
    return scores
}

/// Scales one group's scores in place (a zero divisor leaves them unchanged).
func normalize(_ values: inout [Double], _ how: StructureNormalization) {
    let n = Double(values.count)
    let sum = values.reduce(0, +)
    switch how {
    case .none: return
    case .mean, .sum:
        let d = how == .mean ? sum / n : sum
        if d != 0 { for i in values.indices { values[i] /= d } }
    case .max:
        let d = values.max()!
        if d != 0 { for i in values.indices { values[i] /= d } }
    case .standard:
        let mean = sum / n
        let variance = values.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / n
        let sd = variance.squareRoot()
        for i in values.indices { values[i] = sd != 0 ? (values[i] - mean) / sd : 0 }
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
public func structureSelection(groups: [StructureGroupView], options: StructureOptions,
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
        scores = try computeStructureScores(groups: groups, plan: plan, options: options)
    }
    let keep = try selectStructures(scores: scores, plan: plan, minKeep: groups.map(\.minKeep),
                                    stages: groups.map(\.stage), options: options)
    return (scores, keep)
}
