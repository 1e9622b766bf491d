// The structured pruning functions of prunekit.h: groups, selection, compaction, key channels.
import CPruneKit
import PruneKit

func enumValue<E: RawRepresentable>(_ raw: Int32, _ name: String, _ kind: String) throws(PruneKitError) -> E where E.RawValue == Int32 {
    guard let value = E(rawValue: raw) else { throw PruneKitError(.invalidArgument, "\(name) \(raw) is not a \(kind)") }
    return value
}

func structureOptions(_ pointer: UnsafePointer<pk_structure_options>?) throws(PruneKitError) -> (StructureOptions, scores: UnsafePointer<Double>?) {
    let o = try readOptions(pointer, name: "options", defaults: structureDefaults())
    var options = StructureOptions(
        criterion: try enumValue(o.criterion, "options->criterion", "pk_structure_criterion"),
        reduction: try enumValue(o.reduction, "options->reduction", "pk_reduction"),
        normalization: try enumValue(o.normalization, "options->normalization", "pk_normalization"),
        mode: try enumValue(o.mode, "options->mode", "pk_structure_mode"),
        ratio: o.ratio, multiple: Int(o.multiple), threads: Int(o.num_threads))
    if let values = o.stage_values {
        guard o.stage_count > 0, o.stage_count <= 1 << 20 else {
            throw PruneKitError(.invalidShape, "options->stage_count \(o.stage_count) is out of range")
        }
        options.stageValues = Array(UnsafeBufferPointer(start: values, count: Int(o.stage_count)))
    } else if o.stage_count != 0 {
        throw nullPointer("options->stage_values (stage_count is \(o.stage_count))")
    }
    return (options, o.scores)
}

/// A group argument as the core sees it. The activations are read only for a selection whose
/// criterion ranks them (`criterion` nil: compaction, masking and permutation, which rank nothing).
func groupView(_ g: pk_group, _ name: String, criterion: StructureCriterion? = nil) throws(PruneKitError) -> StructureGroupView {
    guard let members = g.members else { throw nullPointer("\(name).members") }
    guard g.member_count > 0, g.member_count <= 1 << 16 else {
        throw PruneKitError(.invalidShape, "\(name).member_count must be in 1...65536, got \(g.member_count)")
    }
    var views: [StructureMemberView] = []
    for i in 0..<Int(g.member_count) {
        let m = members[i]
        let label = "\(name).members[\(i)]"
        let tensor = try matrixView(m.tensor, "\(label).tensor")
        let axis: StructureAxis
        switch UInt32(bitPattern: m.axis) {
        case PK_AXIS_ROWS.rawValue: axis = .rows(span: Int(m.span))
        case PK_AXIS_COLS.rawValue: axis = .cols(span: Int(m.span))
        case PK_AXIS_BLOCKS.rawValue: axis = .blocks(rows: Int(m.span), cols: Int(m.block_cols))
        default: throw PruneKitError(.invalidArgument, "\(label).axis \(m.axis) is not a pk_axis")
        }
        guard m.scored == 0 || m.scored == 1 else {
            throw PruneKitError(.invalidArgument, "\(label).scored must be 0 or 1, got \(m.scored)")
        }
        let c: CriterionView = m.criterion == nil ? .magnitude : try criterionView(m.criterion, "\(label).criterion")
        views.append(StructureMemberView(tensor: tensor, axis: axis, scored: m.scored == 1, criterion: c))
    }
    var activity: [Double]?
    if let criterion, criterion.ranksActivations {
        guard let activations = g.activations else { throw nullPointer("\(name).activations (the activation criteria need them)") }
        activity = try criterion.activity(from: try snapshot(activations, "\(name).activations"))
    }
    guard g.min_keep >= 0, g.min_keep <= Int64(Int32.max) else {
        throw PruneKitError(.invalidArgument, "\(name).min_keep \(g.min_keep) is out of range")
    }
    return StructureGroupView(members: views, minKeep: Int(g.min_keep), stage: Int(g.stage), activity: activity)
}

/// The `group` argument of the compaction, masking and permutation functions (NULL is an error).
func groupView(_ group: UnsafePointer<pk_group>?) throws(PruneKitError) -> StructureGroupView {
    guard let group else { throw nullPointer("group") }
    return try groupView(group.pointee, "group")
}

func groupViews(_ groups: UnsafePointer<pk_group>?, _ count: Int64, criterion: StructureCriterion) throws(PruneKitError) -> [StructureGroupView] {
    guard let groups else { throw nullPointer("groups") }
    guard count > 0, count <= 1 << 24 else { throw PruneKitError(.invalidShape, "group_count must be in 1...2^24, got \(count)") }
    var views: [StructureGroupView] = []
    for i in 0..<Int(count) { views.append(try groupView(groups[i], "groups[\(i)]", criterion: criterion)) }
    return views
}

/// The caller's scores (options->scores), one per structure of every group: the groups are
/// counted first to know the length.
func givenScores(_ given: UnsafePointer<Double>?, _ views: [StructureGroupView]) throws(PruneKitError) -> UnsafeBufferPointer<Double>? {
    guard let given else { return nil }
    var total = 0
    for (g, group) in views.enumerated() { total += try group.structureCount(label: "groups[\(g)]: ") }
    return UnsafeBufferPointer(start: given, count: total)
}

/// Implements `pk_status pk_structure_options_init(pk_structure_options *options)`.
@c @implementation
public func pk_structure_options_init(_ options: UnsafeMutablePointer<pk_structure_options>?) -> pk_status {
    initialize("pk_structure_options_init", options, to: structureDefaults())
}

/// Implements `pk_status pk_select_structures(const pk_group *, int64_t, const pk_structure_options *,
/// uint8_t *keep_out, double *scores_out)`.
@c @implementation
public func pk_select_structures(_ groups: UnsafePointer<pk_group>?, _ groupCount: Int64,
                                 _ options: UnsafePointer<pk_structure_options>?, _ keepOut: UnsafeMutablePointer<UInt8>?,
                                 _ scoresOut: UnsafeMutablePointer<Double>?) -> pk_status {
    run("pk_select_structures") { () throws(PruneKitError) in
        let (o, given) = try structureOptions(options)
        let views = try groupViews(groups, groupCount, criterion: o.criterion)
        guard let keepOut else { throw nullPointer("keep_out") }
        let (scores, keep) = try structureSelection(groups: views, options: o, scores: try givenScores(given, views))
        keepOut.update(from: keep, count: keep.count)
        scoresOut?.update(from: scores, count: scores.count)
    }
}

/// Implements `pk_status pk_compact_group(const pk_group *, const uint8_t *keep, const pk_compensation *,
/// const pk_matrix *outputs, int64_t *kept_indices_out)`.
@c @implementation
public func pk_compact_group(_ group: UnsafePointer<pk_group>?, _ keep: UnsafePointer<UInt8>?,
                             _ compensation: UnsafePointer<pk_compensation>?, _ outputs: UnsafePointer<pk_matrix>?,
                             _ keptIndicesOut: UnsafeMutablePointer<Int64>?) -> pk_status {
    run("pk_compact_group") { () throws(PruneKitError) in
        let view = try groupView(group)
        guard let keep else { throw nullPointer("keep") }
        guard let outputs else { throw nullPointer("outputs") }
        let outs = try matrixViews(outputs, count: view.members.count, "outputs")
        var c: StructureCompensation?
        if let p = compensation?.pointee {
            let h = try hessianArgument(p.hessian, p.hessian_size)
            // NULL options: the core's defaults (those of pk_reconstruction_options_init).
            let o = p.options == nil ? ReconstructionOptions() : try reconstructionOptions(p.options)
            c = StructureCompensation(member: Int(p.member), hessian: h, hessianSize: Int(p.hessian_size), options: o)
        }
        try compactGroup(view, keep: keep, outputs: outs, keptIndices: keptIndicesOut, compensation: c)
    }
}

/// Implements `pk_status pk_apply_structures(const pk_group *, const uint8_t *keep)`.
@c @implementation
public func pk_apply_structures(_ group: UnsafePointer<pk_group>?, _ keep: UnsafePointer<UInt8>?) -> pk_status {
    run("pk_apply_structures") { () throws(PruneKitError) in
        let view = try groupView(group)
        guard let keep else { throw nullPointer("keep") }
        try applyStructures(view, keep: keep)
    }
}

/// Implements `pk_status pk_structure_mask(const pk_group *, int64_t member, const uint8_t *keep, uint8_t *mask_out)`.
@c @implementation
public func pk_structure_mask(_ group: UnsafePointer<pk_group>?, _ member: Int64, _ keep: UnsafePointer<UInt8>?,
                              _ maskOut: UnsafeMutablePointer<UInt8>?) -> pk_status {
    run("pk_structure_mask") { () throws(PruneKitError) in
        let view = try groupView(group)
        guard let keep else { throw nullPointer("keep") }
        guard let maskOut else { throw nullPointer("mask_out") }
        try structureMask(view, member: Int(member), keep: keep, into: maskOut)
    }
}

/// Implements `pk_status pk_group_layout(const pk_group *, int64_t kept, int64_t *structure_count_out,
/// int64_t *shapes_out)`.
@c @implementation
public func pk_group_layout(_ group: UnsafePointer<pk_group>?, _ kept: Int64, _ structureCountOut: UnsafeMutablePointer<Int64>?,
                            _ shapesOut: UnsafeMutablePointer<Int64>?) -> pk_status {
    run("pk_group_layout") { () throws(PruneKitError) in
        guard let group else { throw nullPointer("group") }
        let view = try groupView(group.pointee, "group", criterion: .l2)
        guard let structureCountOut else { throw nullPointer("structure_count_out") }
        let layouts = try view.layouts(label: "group: ")
        var shapes: [(rows: Int, cols: Int)] = []
        if shapesOut != nil {
            for (m, layout) in layouts.enumerated() {
                shapes.append(try layout.compactedShape(kept: Int(clamping: kept), label: "group: member \(m): "))
            }
        }
        structureCountOut.pointee = Int64(layouts[0].count)
        for (m, shape) in shapes.enumerated() {
            shapesOut![2 * m] = Int64(shape.rows)
            shapesOut![2 * m + 1] = Int64(shape.cols)
        }
    }
}

/// Implements `pk_status pk_key_channels(const pk_matrix *, const pk_matrix *, int64_t, double,
/// uint8_t *keep_out, double *scores_out)`.
@c @implementation
public func pk_key_channels(_ queries: UnsafePointer<pk_matrix>?, _ keys: UnsafePointer<pk_matrix>?, _ heads: Int64,
                            _ ratio: Double, _ keepOut: UnsafeMutablePointer<UInt8>?,
                            _ scoresOut: UnsafeMutablePointer<Double>?) -> pk_status {
    run("pk_key_channels") { () throws(PruneKitError) in
        let q = try matrixView(queries, "queries")
        let k = try matrixView(keys, "keys")
        guard let keepOut else { throw nullPointer("keep_out") }
        let (scores, keep) = try keyChannelSelection(queries: q, keys: k, heads: Int(heads), ratio: ratio)
        keepOut.update(from: keep, count: keep.count)
        scoresOut?.update(from: scores, count: scores.count)
    }
}

/// Implements `pk_status pk_data_free_options_init(pk_data_free_options *options)`.
@c @implementation
public func pk_data_free_options_init(_ options: UnsafeMutablePointer<pk_data_free_options>?) -> pk_status {
    initialize("pk_data_free_options_init", options, to: dataFreeDefaults())
}

/// Implements `pk_status pk_compact_group_data_free(const pk_group *, const uint8_t *keep,
/// const pk_data_free_options *, const pk_matrix *outputs, int64_t *kept_indices_out,
/// double *bias_shift_out, int64_t bias_shift_length)`.
@c @implementation
public func pk_compact_group_data_free(_ group: UnsafePointer<pk_group>?, _ keep: UnsafePointer<UInt8>?,
                                       _ options: UnsafePointer<pk_data_free_options>?, _ outputs: UnsafePointer<pk_matrix>?,
                                       _ keptIndicesOut: UnsafeMutablePointer<Int64>?,
                                       _ biasShiftOut: UnsafeMutablePointer<Double>?, _ biasShiftLength: Int64) -> pk_status {
    run("pk_compact_group_data_free") { () throws(PruneKitError) in
        let view = try groupView(group)
        guard let keep else { throw nullPointer("keep") }
        guard let outputs else { throw nullPointer("outputs") }
        let o = try readOptions(options, name: "options", defaults: dataFreeDefaults())
        let activation: DataFreeActivation = try enumValue(o.activation, "options->activation", "pk_activation")
        func index(_ value: Int64, _ name: String) throws(PruneKitError) -> Int {
            guard value >= 0, value < Int64(view.members.count) else {
                throw PruneKitError(.invalidArgument, "options->\(name) \(value) is outside the group's "
                                    + "\(view.members.count) members (a member index; the default -1 must be set)")
            }
            return Int(value)
        }
        let c = DataFreeCompensation(
            producer: try index(o.producer, "producer"), next: try index(o.next, "next"),
            batchNormWeight: try index(o.bn_weight, "bn_weight"), batchNormBias: try index(o.bn_bias, "bn_bias"),
            batchNormMean: try index(o.bn_mean, "bn_mean"), batchNormVariance: try index(o.bn_var, "bn_var"),
            epsilon: o.epsilon, dampening: o.dampening, activation: activation)
        let rows = view.members[c.next].tensor.rows
        if biasShiftOut != nil {
            guard biasShiftLength == Int64(rows) else {
                throw PruneKitError(.invalidShape, "bias_shift_length is \(biasShiftLength), the next member has \(rows) rows")
            }
        } else if biasShiftLength != 0 {
            throw nullPointer("bias_shift_out (bias_shift_length is \(biasShiftLength))")
        }
        let outs = try matrixViews(outputs, count: view.members.count, "outputs")
        try compactGroupDataFree(view, keep: keep, outputs: outs, options: c, keptIndices: keptIndicesOut,
                                 biasShift: biasShiftOut, threads: Int(o.num_threads))
    }
}

/// Implements `pk_status pk_permute_group(const pk_group *, const int64_t *permutation, int64_t count)`.
@c @implementation
public func pk_permute_group(_ group: UnsafePointer<pk_group>?, _ permutation: UnsafePointer<Int64>?, _ count: Int64) -> pk_status {
    run("pk_permute_group") { () throws(PruneKitError) in
        let view = try groupView(group)
        guard let permutation else { throw nullPointer("permutation") }
        guard count > 0, count <= Int64(Int32.max) else {
            throw PruneKitError(.invalidShape, "count must be in 1...2^31-1, got \(count)")
        }
        try permuteStructures(view, permutation: UnsafeBufferPointer(start: permutation, count: Int(count)))
    }
}
