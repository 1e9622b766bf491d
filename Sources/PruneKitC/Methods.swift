// The method functions of prunekit.h: activation-aware low rank, pruning at inference time.
import CPruneKit
import PruneKit

/// Implements `pk_status pk_low_rank_options_init(pk_low_rank_options *options)`.
@c @implementation
public func pk_low_rank_options_init(_ options: UnsafeMutablePointer<pk_low_rank_options>?) -> pk_status {
    initialize("pk_low_rank_options_init", options, to: lowRankDefaults())
}

/// Implements `pk_status pk_low_rank(const pk_matrix *, const double *, int64_t, const pk_low_rank_options *,
/// const pk_matrix *a_out, const pk_matrix *b_out, int64_t *rank_out, double *singular_values_out)`.
@c @implementation
public func pk_low_rank(_ weights: UnsafePointer<pk_matrix>?, _ hessian: UnsafePointer<Double>?, _ hessianSize: Int64,
                        _ options: UnsafePointer<pk_low_rank_options>?, _ aOut: UnsafePointer<pk_matrix>?,
                        _ bOut: UnsafePointer<pk_matrix>?, _ rankOut: UnsafeMutablePointer<Int64>?,
                        _ singularValuesOut: UnsafeMutablePointer<Double>?) -> pk_status {
    run("pk_low_rank") { () throws(PruneKitError) in
        let view = try matrixView(weights, "weights")
        let h = try hessianArgument(hessian, hessianSize)
        let o = try readOptions(options, name: "options", defaults: lowRankDefaults())
        let a = try matrixView(aOut, "a_out"), b = try matrixView(bOut, "b_out")
        guard let rankOut else { throw nullPointer("rank_out") }
        guard o.rank >= 0, o.rank <= Int64(Int32.max) else {
            throw PruneKitError(.invalidArgument, "options->rank \(o.rank) is out of range")
        }
        let options = LowRankOptions(rank: Int(o.rank), energy: o.energy, dampening: o.dampening,
                                     maxDampeningRetries: Int(o.max_dampening_retries), threads: Int(o.num_threads))
        let r = try lowRank(weights: view, hessian: h, hessianSize: Int(hessianSize), options: options, a: a, b: b,
                            singularValues: singularValuesOut)
        rankOut.pointee = Int64(r)
    }
}

/// Implements `pk_status pk_top_channels(const pk_matrix *scores, int64_t k, int32_t magnitude, int64_t *indices_out)`.
@c @implementation
public func pk_top_channels(_ scores: UnsafePointer<pk_matrix>?, _ k: Int64, _ magnitude: Int32,
                            _ indicesOut: UnsafeMutablePointer<Int64>?) -> pk_status {
    run("pk_top_channels") { () throws(PruneKitError) in
        let view = try matrixView(scores, "scores")
        guard let indicesOut else { throw nullPointer("indices_out") }
        guard magnitude == 0 || magnitude == 1 else {
            throw PruneKitError(.invalidArgument, "magnitude must be 0 or 1, got \(magnitude)")
        }
        guard k >= 1, k <= Int64(view.cols) else {
            throw PruneKitError(.invalidArgument, "k must be in 1 ... \(view.cols) (the channels), got \(k)")
        }
        try topChannels(scores: view, k: Int(k), magnitude: magnitude == 1, indices: indicesOut)
    }
}

/// Implements `pk_status pk_gather(const pk_matrix *source, int32_t axis, const int64_t *indices, int64_t count,
/// const pk_matrix *out)`.
@c @implementation
public func pk_gather(_ source: UnsafePointer<pk_matrix>?, _ axis: Int32, _ indices: UnsafePointer<Int64>?, _ count: Int64,
                      _ out: UnsafePointer<pk_matrix>?) -> pk_status {
    run("pk_gather") { () throws(PruneKitError) in
        let view = try matrixView(source, "source")
        guard let gatherAxis = GatherAxis(rawValue: axis) else {
            throw PruneKitError(.invalidArgument, "axis \(axis) is not PK_AXIS_ROWS or PK_AXIS_COLS")
        }
        guard let indices else { throw nullPointer("indices") }
        guard count > 0, count <= Int64(Int32.max) else { throw PruneKitError(.invalidShape, "count must be positive, got \(count)") }
        let output = try matrixView(out, "out")
        try gather(view, axis: gatherAxis, indices: indices, count: Int(count), into: output)
    }
}

/// Implements `pk_status pk_random_channel_mask(const float *importance, int64_t count, double threshold,
/// double drop_probability, uint64_t seed, uint8_t *mask_out)`.
@c @implementation
public func pk_random_channel_mask(_ importance: UnsafePointer<Float>?, _ count: Int64, _ threshold: Double,
                                   _ dropProbability: Double, _ seed: UInt64, _ maskOut: UnsafeMutablePointer<UInt8>?) -> pk_status {
    run("pk_random_channel_mask") { () throws(PruneKitError) in
        guard let importance else { throw nullPointer("importance") }
        guard let maskOut else { throw nullPointer("mask_out") }
        guard count > 0, count <= 1 << 40 else { throw PruneKitError(.invalidShape, "count must be positive, got \(count)") }
        try randomChannelMask(importance: importance, count: Int(count), threshold: threshold, dropProbability: dropProbability,
                              seed: seed, mask: maskOut)
    }
}
