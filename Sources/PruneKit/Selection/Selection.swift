/// Which entries compete with which, and how many go. Raw scope values are pinned to
/// `enum pk_scope` in include/prunekit.h.
public enum Selection: Sendable, Equatable {
    /// Each row (output) is a group: its inputs compete, as in Wanda.
    case perRow(sparsity: Double)
    /// The whole matrix is one group.
    case perLayer(sparsity: Double)
    /// All layers of a `pruningMasks` call form one group (for one matrix: `perLayer`).
    case global(sparsity: Double)
    /// N:M along the input dimension: in every run of `m` consecutive columns keep the `n`
    /// best and prune `m - n`.
    case nm(n: Int, m: Int)

    /// Checks the parameters that do not depend on a matrix.
    func validate() throws(PruneKitError) {
        switch self {
        case .perRow(let s), .perLayer(let s), .global(let s): try checkSparsity(s)
        case .nm(let n, let m): try checkNM(n, m)
        }
    }

    func validate(cols: Int, label: String = "") throws(PruneKitError) {
        if case .nm(let n, let m) = self { try checkNM(n, m, cols: cols, label: label) }
    }
}

/// The check of every sparsity a pattern gives: in [0, 1].
func checkSparsity(_ s: Double) throws(PruneKitError) {
    guard s >= 0, s <= 1 else { throw .invalidArgument("sparsity must be in [0, 1], got \(s)") }
}

/// The check of every N:M pattern: 0 < n < m, and with `cols`, m divides the columns.
func checkNM(_ n: Int, _ m: Int, cols: Int? = nil, label: String = "") throws(PruneKitError) {
    guard n > 0, m > 0, n < m else { throw .invalidArgument("N:M needs 0 < N < M, got \(n):\(m)") }
    if let cols, cols % m != 0 { throw .invalidShape("\(label)\(n):\(m) needs M to divide cols, but cols is \(cols)") }
}

/// The number of entries a group of `n` prunes at `sparsity`: floor(sparsity * n) in IEEE
/// double, as Python's `int(n * s)`.
@inlinable
public func prunedCount(groupSize n: Int, sparsity: Double) -> Int {
    min(n, Int((sparsity * Double(n)).rounded(.down)))
}
