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
    var activity: [[Double]?] = []
    for group in groups {
        guard let stats = group.activations,
              options.criterion == .meanAbsActivation || options.criterion == .nonzeroFraction else {
            activity.append(nil)
            continue
        }
        activity.append(options.criterion == .meanAbsActivation ? try stats.meanAbsolute() : try stats.zeroFraction().map { 1 - $0 })
    }
    let members = groups.flatMap(\.members)
    let (scores, keep) = try withMemberViews(members[...], []) { views throws(PruneKitError) in
        var start = 0
        var viewGroups: [StructureGroupView] = []
        for (g, group) in groups.enumerated() {
            viewGroups.append(StructureGroupView(members: Array(views[start..<(start + group.members.count)]),
                                                 minKeep: group.minKeep, stage: group.stage, activity: activity[g]))
            start += group.members.count
        }
        return try structureSelection(groups: viewGroups, options: options)
    }
    var keepOut: [[Bool]] = [], scoresOut: [[Double]] = []
    var offset = 0
    for group in groups {
        let n = try group.members.first.map { m throws(PruneKitError) in
            try m.axis.structureCount(rows: m.tensor.rows, cols: m.tensor.cols, label: "")
        } ?? 0
        keepOut.append(keep[offset..<(offset + n)].map { $0 != 0 })
        scoresOut.append(Array(scores[offset..<(offset + n)]))
        offset += n
    }
    return (keepOut, scoresOut)
}

private func withMemberViews<R>(_ members: ArraySlice<StructureMember>, _ done: [StructureMemberView],
                                _ body: ([StructureMemberView]) throws(PruneKitError) -> R) throws(PruneKitError) -> R {
    guard let first = members.first else { return try body(done) }
    return try first.tensor.withMatrixView { view throws(PruneKitError) in
        try first.criterion.withView { criterion throws(PruneKitError) in
            try withMemberViews(members.dropFirst(), done + [StructureMemberView(tensor: view, axis: first.axis,
                                                                                 scored: first.scored, criterion: criterion)], body)
        }
    }
}

/// `tensor` without its pruned structures (rows for `.rows`, columns for `.cols`).
/// - Throws: `.invalidShape` if `keep` does not match the tensor's structures, `.invalidArgument`
///   for blocks or when nothing is kept.
/// The C function is `pk_compact_group`.
public func compacted<S>(_ tensor: Matrix<S>, axis: StructureAxis, keep: [Bool]) throws(PruneKitError) -> Matrix<S> {
    let n = try axis.structureCount(rows: tensor.rows, cols: tensor.cols, label: "")
    guard keep.count == n else { throw .invalidShape("keep has \(keep.count) entries, the tensor has \(n) structures") }
    let kept = keep.filter { $0 }.count
    guard kept > 0 else { throw .invalidArgument("the selection keeps no structure; a compacted tensor cannot be empty") }
    let (rows, cols): (Int, Int)
    switch axis {
    case .rows(let span): (rows, cols) = (kept * span, tensor.cols)
    case .cols(let span): (rows, cols) = (tensor.rows, kept * span)
    case .blocks: throw .invalidArgument("blocks cannot be compacted; apply the selection as a mask")
    }
    var out = try Matrix<S>(rows: rows, cols: cols, values: Array(repeating: S(0), count: rows * cols))
    let bytes = keep.map { UInt8($0 ? 1 : 0) }
    try tensor.withMatrixView { view throws(PruneKitError) in
        try out.withMutableMatrixView { target throws(PruneKitError) in
            try bytes.withUnsafeBufferPointer { k throws(PruneKitError) in
                try compactGroup(StructureGroupView(members: [StructureMemberView(tensor: view, axis: axis)]),
                                 keep: k.baseAddress!, outputs: [target])
            }
        }
    }
    return out
}

/// The entry mask of a selection for a tensor of `rows` x `cols` (e.g. the blocks chosen).
/// The C function is `pk_structure_mask`.
public func structureMask(rows: Int, cols: Int, axis: StructureAxis, keep: [Bool]) throws(PruneKitError) -> Mask {
    let n = try axis.structureCount(rows: rows, cols: cols, label: "")
    guard keep.count == n else { throw .invalidShape("keep has \(keep.count) entries, the tensor has \(n) structures") }
    var values = [UInt8](repeating: 0, count: try checkedProduct(rows, cols, "mask"))
    let bytes = keep.map { UInt8($0 ? 1 : 0) }
    values.withUnsafeMutableBufferPointer { m in
        bytes.withUnsafeBufferPointer { k in
            writeStructureMask(axis, rows: rows, cols: cols, structures: n, keep: k.baseAddress!, into: m.baseAddress!)
        }
    }
    return try Mask(rows: rows, cols: cols, values: values)
}

/// Data-free compensation (UDFC) over owned matrices: a layer's rows (`producer`, n channels of
/// `filter` entries each), its batch norm (`gamma`, `beta`, `mean`, `variance`, 1 x n each) and
/// the next layer (`next`, its columns n structures of `nextSpan`, e.g. a conv's kh * kw),
/// compacted by `keep` after the next layer took over the pruned channels in closed form from
/// the weights and batch-norm statistics alone (see `DataFreeActivation`).
/// - Returns: the compacted producer, batch-norm vectors and compensated next layer, and the
///   shift to add to the next layer's bias (one per next-layer row).
/// - Throws: the errors of `compactGroupDataFree` (`.invalidShape` for mismatched shapes,
///   `.invalidArgument` for a negative variance or nothing kept, `.nonFinite`, `.numeric`).
/// The C function is `pk_compact_group_data_free`.
public func compactedDataFree<S>(producer: Matrix<S>, gamma: Matrix<S>, beta: Matrix<S>, mean: Matrix<S>,
                                 variance: Matrix<S>, next: Matrix<S>, nextSpan: Int = 1, keep: [Bool],
                                 epsilon: Double = 1e-5, dampening: Double = 0.01, activation: DataFreeActivation = .relu)
    throws(PruneKitError) -> (producer: Matrix<S>, batchNorm: [Matrix<S>], next: Matrix<S>, biasShift: [Double]) {
    let inputs: [Matrix<S>] = [producer, gamma, beta, mean, variance, next]
    let axes: [StructureAxis] = [.rows(span: 1), .cols(span: 1), .cols(span: 1), .cols(span: 1), .cols(span: 1),
                                 .cols(span: nextSpan)]
    guard nextSpan > 0 else { throw .invalidArgument("nextSpan must be > 0, got \(nextSpan)") }
    guard keep.count == producer.rows else {
        throw .invalidShape("keep has \(keep.count) entries, the producer has \(producer.rows) channels")
    }
    let kept = keep.filter { $0 }.count
    guard kept > 0 else { throw .invalidArgument("the selection keeps no structure; nothing can compensate") }
    let shapes = [(kept, producer.cols)] + inputs[1...4].map { ($0.rows, kept) } + [(next.rows, kept * nextSpan)]
    let buffers = try shapes.map { (r, c) throws(PruneKitError) in try ScratchBuffer<S>(count: checkedProduct(max(r, 1), max(c, 1), "output")) }
    var shift = [Double](repeating: 0, count: next.rows)
    defer { keepAlive(buffers) }
    let bytes = keep.map { UInt8($0 ? 1 : 0) }
    let members = zip(inputs, axes).map { StructureMember($0, axis: $1, scored: false) }
    try withMemberViews(members[...], []) { views throws(PruneKitError) in
        var outputs: [MatrixView] = []
        for (b, (r, c)) in zip(buffers, shapes) {
            outputs.append(try MatrixView(base: UnsafeMutableRawPointer(b.base), dtype: views[0].tensor.dtype,
                                          rows: r, cols: c, rowStride: max(c, 1), name: "output"))
        }
        try bytes.withUnsafeBufferPointer { k throws(PruneKitError) in
            try shift.withUnsafeMutableBufferPointer { s throws(PruneKitError) in
                try compactGroupDataFree(StructureGroupView(members: views), keep: k.baseAddress!, outputs: outputs,
                                         options: DataFreeCompensation(producer: 0, next: 5, batchNormWeight: 1, batchNormBias: 2,
                                                                       batchNormMean: 3, batchNormVariance: 4, epsilon: epsilon,
                                                                       dampening: dampening, activation: activation),
                                         biasShift: s.baseAddress!)
            }
        }
    }
    let results = try zip(buffers, shapes).map { (b, shape) throws(PruneKitError) in
        try Matrix<S>(rows: shape.0, cols: shape.1, values: Array(UnsafeBufferPointer(start: b.base, count: shape.0 * shape.1)))
    }
    return (results[0], Array(results[1...4]), results[5], shift)
}
