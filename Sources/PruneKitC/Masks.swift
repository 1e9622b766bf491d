// The criterion, selection, score and mask functions of prunekit.h.
import CPruneKit
import PruneKit

/// Implements `pk_status pk_criterion_init(pk_criterion *criterion)`.
@c @implementation
public func pk_criterion_init(_ criterion: UnsafeMutablePointer<pk_criterion>?) -> pk_status {
    initialize("pk_criterion_init", criterion, "criterion", to: criterionDefaults())
}

/// Implements `pk_status pk_selection_init(pk_selection *selection)`.
@c @implementation
public func pk_selection_init(_ selection: UnsafeMutablePointer<pk_selection>?) -> pk_status {
    initialize("pk_selection_init", selection, "selection", to: selectionDefaults())
}

/// Implements `pk_status pk_score(const pk_matrix *, const pk_criterion *, float *scores_out)`.
@c @implementation
public func pk_score(_ weights: UnsafePointer<pk_matrix>?, _ criterion: UnsafePointer<pk_criterion>?,
                     _ scoresOut: UnsafeMutablePointer<Float>?) -> pk_status {
    run("pk_score") { () throws(PruneKitError) in
        let view = try matrixView(weights, "weights")
        let c = try criterionView(criterion, "criterion")
        guard let scoresOut else { throw nullPointer("scores_out") }
        try importanceScores(weights: view, criterion: c, into: scoresOut)
    }
}

/// Implements `pk_status pk_mask(const pk_matrix *, const pk_criterion *, const pk_selection *,
/// uint8_t *mask_out)`.
@c @implementation
public func pk_mask(_ weights: UnsafePointer<pk_matrix>?, _ criterion: UnsafePointer<pk_criterion>?,
                    _ selection: UnsafePointer<pk_selection>?, _ maskOut: UnsafeMutablePointer<UInt8>?) -> pk_status {
    run("pk_mask") { () throws(PruneKitError) in
        let view = try matrixView(weights, "weights")
        let c = try criterionView(criterion, "criterion")
        let (s, threads) = try PruneKitC.selection(selection)
        guard let maskOut else { throw nullPointer("mask_out") }
        try pruningMask(weights: view, criterion: c, selection: s, threads: threads, into: maskOut)
    }
}

/// Implements `pk_status pk_mask_layers(const pk_matrix *, const pk_criterion *const *, int64_t,
/// const pk_selection *, uint8_t *const *masks_out)`.
@c @implementation
public func pk_mask_layers(_ weights: UnsafePointer<pk_matrix>?, _ criteria: UnsafePointer<UnsafePointer<pk_criterion>?>?,
                           _ layerCount: Int64, _ selection: UnsafePointer<pk_selection>?,
                           _ masksOut: UnsafePointer<UnsafeMutablePointer<UInt8>?>?) -> pk_status {
    run("pk_mask_layers") { () throws(PruneKitError) in
        guard let weights else { throw nullPointer("weights") }
        guard let criteria else { throw nullPointer("criteria") }
        guard let masksOut else { throw nullPointer("masks_out") }
        guard layerCount > 0 else { throw PruneKitError(.invalidShape, "layer_count must be positive, got \(layerCount)") }
        let (s, threads) = try PruneKitC.selection(selection)
        var layers: [(weights: MatrixView, criterion: CriterionView)] = []
        var masks: [UnsafeMutablePointer<UInt8>] = []
        for i in 0..<Int(layerCount) {
            let view = try matrixView(weights[i], "weights[\(i)]")
            let c = try criterionView(criteria[i], "criteria[\(i)]")
            guard let mask = masksOut[i] else { throw nullPointer("masks_out[\(i)]") }
            layers.append((view, c))
            masks.append(mask)
        }
        try pruningMasks(layers: layers, selection: s, threads: threads, into: masks)
    }
}

/// Implements `pk_status pk_permutation_options_init(pk_permutation_options *options)`.
@c @implementation
public func pk_permutation_options_init(_ options: UnsafeMutablePointer<pk_permutation_options>?) -> pk_status {
    initialize("pk_permutation_options_init", options, to: permutationDefaults())
}

/// Implements `pk_status pk_channel_permutation(const pk_matrix *, const pk_criterion *,
/// const pk_permutation_options *, int64_t *permutation_out, double *kept_before_out, double *kept_after_out)`.
@c @implementation
public func pk_channel_permutation(_ weights: UnsafePointer<pk_matrix>?, _ criterion: UnsafePointer<pk_criterion>?,
                                   _ options: UnsafePointer<pk_permutation_options>?,
                                   _ permutationOut: UnsafeMutablePointer<Int64>?,
                                   _ keptBeforeOut: UnsafeMutablePointer<Double>?,
                                   _ keptAfterOut: UnsafeMutablePointer<Double>?) -> pk_status {
    run("pk_channel_permutation") { () throws(PruneKitError) in
        let view = try matrixView(weights, "weights")
        let c: CriterionView = criterion == nil ? .magnitude : try criterionView(criterion, "criterion")
        let o = options == nil ? permutationDefaults() : try readOptions(options, name: "options", defaults: permutationDefaults())
        guard o.reserved == 0 else { throw PruneKitError(.invalidArgument, "options->reserved must be 0, got \(o.reserved)") }
        guard let permutationOut else { throw nullPointer("permutation_out") }
        guard o.max_swaps >= 0, o.max_swaps <= 1 << 40, o.segment >= 0, o.segment <= Int64(Int.max) else {
            throw PruneKitError(.invalidArgument, "options->max_swaps must be in [1, 2^40] and segment >= 0, got "
                                + "\(o.max_swaps) and \(o.segment)")
        }
        let result = try channelPermutation(
            weights: view, criterion: c,
            options: PermutationOptions(n: Int(o.n), m: Int(o.m), segment: Int(o.segment), maxSwaps: Int(o.max_swaps),
                                        timeLimit: o.time_limit, threads: Int(o.num_threads)))
        for (j, p) in result.permutation.enumerated() { permutationOut[j] = Int64(p) }
        keptBeforeOut?.pointee = result.keptBefore
        keptAfterOut?.pointee = result.keptAfter
    }
}
