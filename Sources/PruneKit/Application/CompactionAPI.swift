/// The safe Swift API of applying structure selections, over owned matrices: compacted tensors,
/// entry masks, data-free compensation (`selectStructures` chooses the structures).

/// `tensor` without its pruned structures (rows for `.rows`, columns for `.cols`).
/// - Throws: `.invalidShape` if `keep` does not match the tensor's structures, `.invalidArgument`
///   for blocks or when nothing is kept.
/// The C function is `pk_compact_group`.
public func compacted<S>(_ tensor: Matrix<S>, axis: StructureAxis, keep: [Bool]) throws(PruneKitError) -> Matrix<S> {
    let layout = try StructureLayout(axis: axis, rows: tensor.rows, cols: tensor.cols)
    let bytes = try keepBytes(keep, count: layout.count)
    let kept = keep.filter { $0 }.count
    guard kept > 0 else { throw .invalidArgument("the selection keeps no structure; a compacted tensor cannot be empty") }
    let (rows, cols) = try layout.compactedShape(kept: kept)
    var out = try Matrix<S>(rows: rows, cols: cols, values: Array(repeating: S(0), count: rows * cols))
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

/// Sets the structures of `tensor` that `keep` prunes (false) to zero, in place (the shape stays).
/// - Throws: `.invalidShape` if `keep` does not match the tensor's structures.
/// The C function is `pk_apply_structures`.
public func applyStructures<S>(_ keep: [Bool], to tensor: inout Matrix<S>, axis: StructureAxis) throws(PruneKitError) {
    let bytes = try keepBytes(keep, count: StructureLayout(axis: axis, rows: tensor.rows, cols: tensor.cols).count)
    try tensor.withMutableMatrixView { view throws(PruneKitError) in
        try bytes.withUnsafeBufferPointer { k throws(PruneKitError) in
            try applyStructures(StructureGroupView(members: [StructureMemberView(tensor: view, axis: axis)]), keep: k.baseAddress!)
        }
    }
}

/// The UDFC coefficients of a selection of `group`'s structures (see `DataFreeActivation` for the
/// closed form): the members `options` names are the producing layer, its batch norm and the
/// next layer. Nothing is written.
/// - Throws: `.invalidShape` if `keep` does not match the group's structures; the errors of
///   `compactedDataFree` (members of the wrong kind, nothing kept, bad statistics, `.numeric`).
public func dataFreeCoefficients(_ group: StructureGroup, keep: [Bool], options: DataFreeCompensation) throws(PruneKitError)
    -> DataFreeCoefficients {
    let bytes = try keepBytes(keep, count: structureCounts([group])[0], of: "the group")
    return try withGroupViews([group]) { views throws(PruneKitError) in
        try bytes.withUnsafeBufferPointer { k throws(PruneKitError) in
            try dataFreeCoefficients(views[0], keep: k.baseAddress!, options: options)
        }
    }
}

/// The entry mask of a selection for a tensor of `rows` x `cols` (e.g. the blocks chosen).
/// The C function is `pk_structure_mask`.
public func structureMask(rows: Int, cols: Int, axis: StructureAxis, keep: [Bool]) throws(PruneKitError) -> Mask {
    let layout = try StructureLayout(axis: axis, rows: rows, cols: cols)
    let bytes = try keepBytes(keep, count: layout.count)
    var values = [UInt8](repeating: 0, count: try checkedProduct(rows, cols, "mask"))
    values.withUnsafeMutableBufferPointer { m in
        bytes.withUnsafeBufferPointer { k in layout.expandMask(keep: k.baseAddress!, into: m.baseAddress!) }
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
    var outputs: [Matrix<S>] = []
    var shift = [Double](repeating: 0, count: next.rows)
    let bytes = keep.map { UInt8($0 ? 1 : 0) }
    let options = DataFreeCompensation(producer: 0, next: 5, batchNormWeight: 1, batchNormBias: 2, batchNormMean: 3,
                                       batchNormVariance: 4, epsilon: epsilon, dampening: dampening, activation: activation)
    try withGroupViews([StructureGroup(zip(inputs, axes).map { StructureMember($0, axis: $1, scored: false) })]) { groups throws(PruneKitError) in
        // The outputs' shapes, from the members' layouts (checked as compactGroupDataFree checks them).
        for layout in try groups[0].layouts(label: "group: ") {
            let (rows, cols) = try layout.compactedShape(kept: kept)
            outputs.append(try Matrix<S>(rows: rows, cols: cols, values: Array(repeating: S(0), count: rows * cols)))
        }
        try withMutableMatrixViews(&outputs) { outs throws(PruneKitError) in
            try bytes.withUnsafeBufferPointer { k throws(PruneKitError) in
                try shift.withUnsafeMutableBufferPointer { s throws(PruneKitError) in
                    try compactGroupDataFree(groups[0], keep: k.baseAddress!, outputs: outs, options: options, biasShift: s.baseAddress!)
                }
            }
        }
    }
    return (outputs[0], Array(outputs[1...4]), outputs[5], shift)
}
