/// OWL's outlier ratio and ThinK's key channels over owned matrices: the safe Swift API of
/// `pk_outlier_ratio` and `pk_key_channels`.

/// OWL's outlier ratio of one layer: the fraction of its scores under `criterion` (e.g. Wanda)
/// above `threshold` times their mean (OWL's M, e.g. 5).
/// - Throws: `.invalidArgument` for a threshold that is not positive and finite; the errors of
///   `importanceScores`.
/// The C function is `pk_outlier_ratio`.
public func outlierRatio(for weights: some MatrixRepresentable, criterion: Criterion, threshold: Double,
                         threads: Int = 0) throws(PruneKitError) -> Double {
    try weights.withMatrixView { view throws(PruneKitError) in
        try criterion.withView { c throws(PruneKitError) in
            try outlierRatio(weights: view, criterion: c, threshold: threshold, threads: threads)
        }
    }
}

/// Key-cache channels to keep, driven by the queries (ThinK): per key head, floor(ratio * d)
/// channels are dropped, ranked by (score, channel) ascending.
/// - Parameters:
///   - queries: [query tokens, query heads * d], the query heads a multiple of `heads`.
///   - keys: [key tokens, heads * d].
/// - Returns: keep flags and float64 scores, heads * d each, head-major.
/// - Throws: `.invalidShape` for heads not dividing the widths, `.invalidArgument` for a ratio
///   outside [0, 1], `.nonFinite`.
/// The C function is `pk_key_channels`.
public func keyChannels<S, T>(queries: Matrix<S>, keys: Matrix<T>, heads: Int, ratio: Double,
                              threads: Int = 0) throws(PruneKitError) -> (keep: [Bool], scores: [Double]) {
    let (scores, keep) = try queries.withMatrixView { q throws(PruneKitError) in
        try keys.withMatrixView { k throws(PruneKitError) in
            try keyChannelSelection(queries: q, keys: k, heads: heads, ratio: ratio, threads: threads)
        }
    }
    return (keep.map { $0 != 0 }, scores)
}
