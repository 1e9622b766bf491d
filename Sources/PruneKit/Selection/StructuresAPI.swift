/// The safe Swift API of structured pruning, over owned matrices.
///
///     let hidden = StructureGroup([
///         StructureMember(up, axis: .rows(span: 1)),                          // [hidden, d]
///         StructureMember(bias, axis: .cols(span: 1), scored: false),         // 1 x hidden
///         StructureMember(down, axis: .cols(span: 1)),                        // [d, hidden]
///     ])
///     let (keep, _) = try selectStructures([hidden], options: .init(ratio: 0.5))
///     let smallerUp = try compacted(up, axis: .rows(span: 1), keep: keep[0])

/// One tensor of a group, the axis its structures lie along, and how its entries are scored.
public struct StructureMember: Sendable {
    public var tensor: any MatrixRepresentable
    public var axis: StructureAxis
    /// Whether its entries count towards the structure scores (false: only compacted or masked).
    public var scored: Bool
    /// The entry scores summed over each structure (magnitude, Wanda, STADE, Taylor, ...).
    public var criterion: Criterion

    public init(_ tensor: any MatrixRepresentable, axis: StructureAxis, scored: Bool = true,
                criterion: Criterion = .magnitude) {
        self.tensor = tensor
        self.axis = axis
        self.scored = scored
        self.criterion = criterion
    }
}

/// Tensors that share one structural axis. The C struct is `pk_group`.
public struct StructureGroup: Sendable {
    public var members: [StructureMember]
    /// Structures always kept.
    public var minKeep: Int
    /// Groups of one stage are ranked together (global), share a width (uniform) and a value.
    public var stage: Int
    /// Statistics of the structures' outputs, for `.meanAbsActivation` and `.nonzeroFraction`.
    public var activations: ActivationStatistics?

    public init(_ members: [StructureMember], minKeep: Int = 0, stage: Int = 0, activations: ActivationStatistics? = nil) {
        self.members = members
        self.minKeep = minKeep
        self.stage = stage
        self.activations = activations
    }
}

/// Scores and selects the structures of every group.
/// - Returns: per group, keep flags (true = keep) and the normalised float64 scores ranked.
/// - Throws: `PruneKitError` (nothing is computed partially): `.invalidShape` for members that
///   disagree, `.invalidArgument` for an impossible minimum or bad option, `.nonFinite`.
/// The C function is `pk_select_structures`.
public func selectStructures(_ groups: [StructureGroup], options: StructureOptions = .init()) throws(PruneKitError)
    -> (keep: [[Bool]], scores: [[Double]]) {
    let (scores, keep) = try withGroupViews(groups, criterion: options.criterion) { views throws(PruneKitError) in
        try structureSelection(groups: views, options: options)
    }
    let counts = try structureCounts(groups)
    return (split(keep, counts).map { $0.map { $0 != 0 } }, split(scores, counts))
}

/// Each group's structure count (its first member's layout; the core checks that the others agree).
func structureCounts(_ groups: [StructureGroup]) throws(PruneKitError) -> [Int] {
    var counts: [Int] = []
    for (g, group) in groups.enumerated() {
        guard let m = group.members.first else { throw .invalidShape("group \(g) has no members") }
        counts.append(try StructureLayout(axis: m.axis, rows: m.tensor.rows, cols: m.tensor.cols, label: "group \(g): ").count)
    }
    return counts
}

/// `values` (groups concatenated) cut into one array per group of `counts`.
func split<T>(_ values: [T], _ counts: [Int]) -> [[T]] {
    var out: [[T]] = [], start = 0
    for n in counts {
        out.append(Array(values[start..<(start + n)]))
        start += n
    }
    return out
}

/// One keep byte per structure (1 = keep), checked against the `count` structures of `owner`.
func keepBytes(_ keep: [Bool], count: Int, of owner: String = "the tensor") throws(PruneKitError) -> [UInt8] {
    guard keep.count == count else { throw .invalidShape("keep has \(keep.count) entries, \(owner) has \(count) structures") }
    return keep.map { $0 ? 1 : 0 }
}

/// Lends the groups' memory as views to `body`; with `criterion`, the activity it ranks comes
/// from each group's statistics.
func withGroupViews<R>(_ groups: [StructureGroup], criterion: StructureCriterion? = nil,
                       _ body: ([StructureGroupView]) throws(PruneKitError) -> R) throws(PruneKitError) -> R {
    var activity: [[Double]?] = []
    for group in groups {
        activity.append(try group.activations.flatMap { (stats) throws(PruneKitError) in try criterion?.activity(from: stats) })
    }
    return try withMemberViews(groups.flatMap(\.members)[...], []) { views throws(PruneKitError) in
        var start = 0
        var viewGroups: [StructureGroupView] = []
        for (g, group) in groups.enumerated() {
            viewGroups.append(StructureGroupView(members: Array(views[start..<(start + group.members.count)]),
                                                 minKeep: group.minKeep, stage: group.stage, activity: activity[g]))
            start += group.members.count
        }
        return try body(viewGroups)
    }
}

/// Lends every member's memory as views, in order, to `body`.
func withMemberViews<R>(_ members: ArraySlice<StructureMember>, _ done: [StructureMemberView],
                        _ body: ([StructureMemberView]) throws(PruneKitError) -> R) throws(PruneKitError) -> R {
    guard let first = members.first else { return try body(done) }
    return try first.tensor.withMatrixView { view throws(PruneKitError) in
        try first.criterion.withView { criterion throws(PruneKitError) in
            try withMemberViews(members.dropFirst(), done + [StructureMemberView(tensor: view, axis: first.axis,
                                                                                 scored: first.scored, criterion: criterion)], body)
        }
    }
}
