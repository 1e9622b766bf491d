/// Structured pruning's types: the host declares groups of tensors that share one structural axis
/// (the rows of one layer, the columns of the next, the entries of a bias or batch-norm vector,
/// the blocks of rows of q/k/v that make a head); PruneKit scores each structure
/// (Scoring/StructureScores.swift), selects which go (Selection/StructureSelection.swift), and
/// compacts or masks every member alike (Application/Compaction.swift). They live beside the
/// criteria because a group's members carry theirs.
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

    /// The extent along the axis ("rows", "columns") for messages.
    var name: String {
        switch self {
        case .rows: "rows"
        case .cols: "columns"
        case .blocks: "blocks"
        }
    }
}

/// The layout of one rows x cols tensor along a structure axis: how many structures it has, the
/// shape it compacts to, and which entries a selection keeps. The one place this arithmetic lives:
/// scoring, selection, compaction and masks use it, and the C function `pk_group_layout` exposes it.
public struct StructureLayout: Sendable, Equatable {
    public let axis: StructureAxis
    public let rows: Int, cols: Int
    /// The number of structures.
    public let count: Int
    /// `.blocks`: blocks per block row, ceil(cols / block cols); otherwise 0.
    let blocksPerRow: Int

    /// Checks the axis against the shape: a positive span (block size) and, for rows and columns,
    /// an extent that is a whole number of structures.
    /// - Throws: `.invalidArgument` (span <= 0), `.invalidShape` (not a whole number), `label` first.
    public init(axis: StructureAxis, rows: Int, cols: Int, label: String = "") throws(PruneKitError) {
        switch axis {
        case .rows(let span):
            guard span > 0 else { throw .invalidArgument("\(label)span must be positive, got \(span)") }
            guard rows % span == 0 else {
                throw .invalidShape("\(label)\(rows) rows are not a whole number of structures of \(span) rows")
            }
            (count, blocksPerRow) = (rows / span, 0)
        case .cols(let span):
            guard span > 0 else { throw .invalidArgument("\(label)span must be positive, got \(span)") }
            guard cols % span == 0 else {
                throw .invalidShape("\(label)\(cols) columns are not a whole number of structures of \(span) columns")
            }
            (count, blocksPerRow) = (cols / span, 0)
        case .blocks(let r, let c):
            guard r > 0, c > 0 else { throw .invalidArgument("\(label)block size must be positive, got \(r) x \(c)") }
            blocksPerRow = (cols + c - 1) / c
            count = ((rows + r - 1) / r) * blocksPerRow
        }
        (self.axis, self.rows, self.cols) = (axis, rows, cols)
    }

    /// The shape without its pruned structures when `kept` stay: (kept * span) x cols along rows,
    /// rows x (kept * span) along columns (`compactGroup`'s outputs).
    /// - Throws: `.invalidArgument` for blocks (they are masked, not compacted) or `kept` outside
    ///   0 ... count.
    public func compactedShape(kept: Int, label: String = "") throws(PruneKitError) -> (rows: Int, cols: Int) {
        guard kept >= 0, kept <= count else {
            throw .invalidArgument("\(label)\(kept) kept structures is outside 0 ... \(count)")
        }
        switch axis {
        case .rows(let span): return (kept * span, cols)
        case .cols(let span): return (rows, kept * span)
        case .blocks:
            throw .invalidArgument("\(label)blocks cannot be compacted; apply the selection as a mask")
        }
    }

    /// The structure that entry (row, col) belongs to.
    @inline(__always)
    func structure(row: Int, col: Int) -> Int {
        switch axis {
        case .rows(let span): row / span
        case .cols(let span): col / span
        case .blocks(let r, let c): (row / r) * blocksPerRow + col / c
        }
    }

    /// The element rows (`.rows`) or columns (`.cols`) that survive when the structures `kept`
    /// (increasing) stay.
    func keptElements(_ kept: [Int]) -> [Int] {
        let span: Int
        switch axis {
        case .rows(let s), .cols(let s): span = s
        case .blocks: return []
        }
        var out: [Int] = []
        out.reserveCapacity(kept.count * span)
        for i in kept { for e in (i * span)..<((i + 1) * span) { out.append(e) } }
        return out
    }

    /// Expands one keep byte per structure into the entry mask (rows * cols bytes, 1 = keep).
    func expandMask(keep: UnsafePointer<UInt8>, into mask: UnsafeMutablePointer<UInt8>) {
        switch axis {
        case .rows(let span):
            for r in 0..<rows { (mask + r * cols).initialize(repeating: keep[r / span], count: cols) }
        case .cols(let span):
            for j in 0..<cols { mask[j] = keep[j / span] }
            for r in 1..<max(rows, 1) { (mask + r * cols).update(from: mask, count: cols) }
        case .blocks(let br, let bc):
            for r in 0..<rows {
                let row = mask + r * cols, blocks = keep + (r / br) * blocksPerRow
                for j in 0..<cols { row[j] = blocks[j / bc] }
            }
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
package struct StructureMemberView: @unchecked Sendable {
    package var tensor: MatrixView
    package var axis: StructureAxis
    /// Whether the member's entries count towards the structure's score.
    package var scored: Bool
    package var criterion: CriterionView

    package init(tensor: MatrixView, axis: StructureAxis, scored: Bool = true, criterion: CriterionView = .magnitude) {
        self.tensor = tensor
        self.axis = axis
        self.scored = scored
        self.criterion = criterion
    }
}

/// A group over borrowed memory: tensors that share one structural axis.
package struct StructureGroupView: @unchecked Sendable {
    package var members: [StructureMemberView]
    /// Structures this group always keeps (global and threshold selection; an error elsewhere
    /// when the target would keep fewer).
    package var minKeep: Int
    /// The stage: groups of one stage are ranked together (global, uniform) and share a value.
    package var stage: Int
    /// Per-feature activity of the structures' outputs for the activation criteria: mean |x|
    /// (`ActivationStatistics.meanAbsolute()`) or the non-zero fraction, features = structures * k.
    package var activity: [Double]?

    package init(members: [StructureMemberView], minKeep: Int = 0, stage: Int = 0, activity: [Double]? = nil) {
        self.members = members
        self.minKeep = minKeep
        self.stage = stage
        self.activity = activity
    }

    /// Every member's layout, checked to agree in their number of structures.
    package func layouts(label: String = "") throws(PruneKitError) -> [StructureLayout] {
        guard !members.isEmpty else { throw .invalidShape("\(label)has no members") }
        var layouts: [StructureLayout] = []
        for (m, member) in members.enumerated() {
            let layout = try StructureLayout(axis: member.axis, rows: member.tensor.rows, cols: member.tensor.cols,
                                             label: "\(label)member \(m): ")
            if let first = layouts.first, layout.count != first.count {
                throw .invalidShape(
                    "\(label)members disagree along the axis: member \(m) has \(layout.count) structures (\(member.tensor.rows) x \(member.tensor.cols), \(member.axis.name)), member 0 has \(first.count)")
            }
            layouts.append(layout)
        }
        return layouts
    }

    /// The number of structures, checked to agree across members.
    package func structureCount(label: String = "") throws(PruneKitError) -> Int {
        try layouts(label: label)[0].count
    }
}
