/// Per-row and N:M selection of one row, over the ranking module (`KthSelection`,
/// `GroupRanking`).
enum RowSelector {
    /// Linear histogram bins of the k-th selection of a row: 2^10.
    static let binBits = 10
    static let binCount = 1 << binBits

    /// mask[j] = 1 unless (score j, j) <= (score of `key`, `position`): compared as floats, which
    /// order exactly as their keys (scores are finite here; -0 == +0).
    @inline(__always)
    static func writeMask(scores: UnsafePointer<Float>, n: Int, key: UInt32, position: Int, mask: UnsafeMutablePointer<UInt8>) {
        let tScore = scoreOfKey(key)
        // Columns up to the cut keep only strictly larger scores; later ones keep ties too.
        let split = min(n, position + 1)
        for j in 0..<split { mask[j] = scores[j] > tScore ? 1 : 0 }
        for j in split..<n { mask[j] = scores[j] >= tScore ? 1 : 0 }
    }
}

/// N:M selection of one row: in each run of m columns, keep the n with the highest
/// (key, position) and prune the rest. (M = 4 normally takes `writeNM4Mask` on scores.)
@inline(__always)
func writeNMMask(keys: UnsafePointer<UInt32>, cols: Int, n: Int, m: Int, mask: UnsafeMutablePointer<UInt8>,
                 packed: UnsafeMutablePointer<UInt64>) {
    var g = 0
    while g < cols {
        GroupRanking.markLowest(keys + g, count: m, prune: m - n, pruned: 0, into: mask + g, packed: packed)
        g += m
    }
}
