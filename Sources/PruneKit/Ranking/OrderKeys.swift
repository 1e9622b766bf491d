/// The ranking contract (ARCHITECTURE.md): inside a comparison group, entries are ranked by
/// (score, index) ascending and the first k are pruned. Everything in Ranking/ implements that
/// one order, in integer arithmetic on order keys: unsigned integers that order as the scores
/// they come from (a < b iff key(a) < key(b)), with -0.0 and +0.0 the same key.
///
/// Row, layer, global and N:M selection, SparseGPT's blocks and groups, ADMM's projections,
/// structure selection and gating all rank through these files.

/// The order key of a float32 score.
@inline(__always)
func orderKey(_ score: Float) -> UInt32 {
    let bits = (score + 0).bitPattern
    return bits ^ (UInt32(bitPattern: Int32(bitPattern: bits) >> 31) | 0x8000_0000)
}

/// The float score whose `orderKey` is `key` (+0.0 for the zero key).
@inline(__always)
func scoreOfKey(_ key: UInt32) -> Float {
    let bits = key & 0x8000_0000 != 0 ? key ^ 0x8000_0000 : ~key
    return Float(bitPattern: bits)
}

/// Scores ranked in their own precision (SparseGPT's and ADMM's w^2 / d^2, structure scores).
protocol OrderKeyed {
    /// The order key, widened to 64 bits (a float32's is its 32-bit `orderKey`).
    var orderKey64: UInt64 { get }
}

extension Float: OrderKeyed {
    var orderKey64: UInt64 { UInt64(orderKey(self)) }
}

extension Double: OrderKeyed {
    var orderKey64: UInt64 {
        let bits = (self + 0).bitPattern
        return bits ^ (UInt64(bitPattern: Int64(bitPattern: bits) >> 63) | 0x8000_0000_0000_0000)
    }
}
