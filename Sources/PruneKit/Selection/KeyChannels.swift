/// Key-cache channel pruning driven by the queries (ThinK): a key channel c of a head matters to
/// the attention scores Q K^T through the rank-one term Q[:, c] K[:, c]^T, whose Frobenius norm is
/// ||Q[:, c]|| * ||K[:, c]||. The channels with the smallest such contribution are dropped.

/// The per-channel contribution scores and keep flags of every key head.
///
/// - Parameters:
///   - queries: [query tokens, query_heads * head_dim]; query_heads a multiple of `heads`
///     (grouped-query attention: the query heads of a group are stacked, their norms combine as
///     sqrt of the summed squares).
///   - keys: [key tokens, heads * head_dim].
///   - heads: key (KV) heads.
///   - ratio: the fraction of each head's channels dropped, floor(ratio * head_dim), ranked by
///     (score, channel) ascending.
/// - Returns: scores and keep flags (1 = keep), heads * head_dim each, head-major.
/// - Throws: `.invalidShape` for heads not dividing the widths, `.invalidArgument` for a ratio
///   outside [0, 1], `.nonFinite` for a non-finite query or key.
/// The C function is `pk_key_channels`.
package func keyChannelSelection(queries: MatrixView, keys: MatrixView, heads: Int, ratio: Double,
                                threads: Int = 0) throws(PruneKitError) -> (scores: [Double], keep: [UInt8]) {
    guard heads > 0 else { throw .invalidShape("heads must be positive, got \(heads)") }
    guard keys.cols % heads == 0 else { throw .invalidShape("keys have \(keys.cols) columns, not a multiple of \(heads) heads") }
    let headDim = keys.cols / heads
    guard queries.cols % keys.cols == 0 else {
        throw .invalidShape("queries have \(queries.cols) columns, not a multiple of the keys' \(keys.cols) (\(heads) heads of \(headDim))")
    }
    guard ratio >= 0, ratio <= 1 else { throw .invalidArgument("ratio must be in [0, 1], got \(ratio)") }
    guard threads >= 0 else { throw .invalidArgument("num_threads must be >= 0, got \(threads)") }
    let q = try columnSquareSums(queries, name: "query")
    let k = try columnSquareSums(keys, name: "key")
    let perGroup = queries.cols / keys.cols
    var scores = [Double](repeating: 0, count: keys.cols)
    for h in 0..<heads {
        for c in 0..<headDim {
            var qs = 0.0
            for g in 0..<perGroup { qs += q[(h * perGroup + g) * headDim + c] }
            scores[h * headDim + c] = qs.squareRoot() * k[h * headDim + c].squareRoot()
        }
    }
    let options = StructureOptions(mode: .perGroup, ratio: ratio, threads: threads)
    let keep = try selectStructures(scores: scores, plan: StructurePlan(counts: Array(repeating: headDim, count: heads)), minKeep: Array(repeating: 0, count: heads),
                                    stages: Array(repeating: 0, count: heads), options: options)
    return (scores, keep)
}

/// Sum over rows of x^2 per column in float64: the accumulator's sums of squares (its finiteness
/// check names the token and channel).
func columnSquareSums(_ m: MatrixView, name: String) throws(PruneKitError) -> [Double] {
    var stats = try ActivationStatistics(features: m.cols)
    do {
        try stats.accumulate(m)
    } catch {
        throw PruneKitError(error.status, "\(name)s: \(error.message)")
    }
    return stats.sumSquares
}
