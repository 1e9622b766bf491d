/// Small-group ranking: groups of m entries (N:M, SparseGPT's and ADMM's N:M groups) where each
/// entry's rank in (key, position) order is counted instead of sorted.
enum GroupRanking {
    /// Marks the `prune` lowest of a group of `m` entries by (key, position): `flags[i]` becomes
    /// `pruned` for them and `1 - pruned` for the others (`pruned` 0 writes a keep mask, 1 a
    /// pruned flag). Ranks are counted for m <= 16 (or without `packed` scratch of m elements),
    /// else the group is sorted packed with its positions (keys of at most 32 bits).
    @inline(__always)
    static func markLowest<Key: FixedWidthInteger>(_ keys: UnsafePointer<Key>, count m: Int, prune: Int, pruned: UInt8,
                                                   into flags: UnsafeMutablePointer<UInt8>,
                                                   packed: UnsafeMutablePointer<UInt64>? = nil) {
        let kept = 1 - pruned
        if m <= 16 || packed == nil || Key.bitWidth > 32 {
            for i in 0..<m {
                let x = keys[i]
                var rank = 0
                for j in 0..<m {
                    let y = keys[j]
                    rank &+= (y < x || (y == x && j < i)) ? 1 : 0
                }
                flags[i] = rank < prune ? pruned : kept
            }
            return
        }
        let packed = packed!
        for i in 0..<m { packed[i] = UInt64(truncatingIfNeeded: keys[i]) << 32 | UInt64(i) }
        var group = UnsafeMutableBufferPointer(start: packed, count: m)
        group.sort()
        for r in 0..<m { flags[Int(truncatingIfNeeded: packed[r] & 0xFFFF_FFFF)] = r < prune ? pruned : kept }
    }
}

/// M = 4 on finite float32 scores, four groups at a time in structure-of-arrays form: A, B, C,
/// D hold the first to fourth entry of four groups. Six strict comparisons give every pair's
/// order (on equal scores the lower index comes first; -0.0 == +0.0, as for keys), each rank
/// is a sum of comparison masks, and the four keep bytes of a group are packed into one
/// little-endian 32-bit lane, so the mask is stored without transposing back.
@inline(__always)
func writeNM4Mask(scores: UnsafePointer<Float>, cols: Int, prune: Int, mask: UnsafeMutablePointer<UInt8>) {
    typealias I = SIMD4<Int32>
    let threshold = I(repeating: Int32(prune))
    let raw = UnsafeRawPointer(scores)
    var j = 0
    while j + 16 <= cols {
        let g0 = raw.loadUnaligned(fromByteOffset: 4 * j, as: SIMD4<Float>.self)
        let g1 = raw.loadUnaligned(fromByteOffset: 4 * j + 16, as: SIMD4<Float>.self)
        let g2 = raw.loadUnaligned(fromByteOffset: 4 * j + 32, as: SIMD4<Float>.self)
        let g3 = raw.loadUnaligned(fromByteOffset: 4 * j + 48, as: SIMD4<Float>.self)
        // 4 x 4 transpose (unpack low/high, then move halves).
        let t0 = SIMD4(g0[0], g1[0], g0[1], g1[1]), t1 = SIMD4(g2[0], g3[0], g2[1], g3[1])
        let t2 = SIMD4(g0[2], g1[2], g0[3], g1[3]), t3 = SIMD4(g2[2], g3[2], g2[3], g3[3])
        let a = SIMD4(t0[0], t0[1], t1[0], t1[1]), b = SIMD4(t0[2], t0[3], t1[2], t1[3])
        let c = SIMD4(t2[0], t2[1], t3[0], t3[1]), d = SIMD4(t2[2], t2[3], t3[2], t3[3])
        // m_xy = -1 where y comes before x (y's score strictly smaller), else 0.
        let mab = I(repeating: 0).replacing(with: -1, where: b .< a)
        let mac = I(repeating: 0).replacing(with: -1, where: c .< a)
        let mad = I(repeating: 0).replacing(with: -1, where: d .< a)
        let mbc = I(repeating: 0).replacing(with: -1, where: c .< b)
        let mbd = I(repeating: 0).replacing(with: -1, where: d .< b)
        let mcd = I(repeating: 0).replacing(with: -1, where: d .< c)
        let ra = 0 &- (mab &+ mac &+ mad)
        let rb = 1 &+ mab &- (mbc &+ mbd)
        let rc = 2 &+ mac &+ mbc &- mcd
        let rd = 3 &+ mad &+ mbd &+ mcd
        let one = I(repeating: 1), zero = I(repeating: 0)
        let ka = zero.replacing(with: one, where: ra .>= threshold)
        let kb = zero.replacing(with: one, where: rb .>= threshold)
        let kc = zero.replacing(with: one, where: rc .>= threshold)
        let kd = zero.replacing(with: one, where: rd .>= threshold)
        let packed = ka | (kb &<< 8) | (kc &<< 16) | (kd &<< 24)
        UnsafeMutableRawPointer(mask + j).storeBytes(of: packed, as: SIMD4<Int32>.self)
        j += 16
    }
    while j < cols {
        let a = scores[j], b = scores[j + 1], c = scores[j + 2], d = scores[j + 3]
        let ra = (b < a ? 1 : 0) + (c < a ? 1 : 0) + (d < a ? 1 : 0)
        let rb = (a <= b ? 1 : 0) + (c < b ? 1 : 0) + (d < b ? 1 : 0)
        let rc = (a <= c ? 1 : 0) + (b <= c ? 1 : 0) + (d < c ? 1 : 0)
        let rd = (a <= d ? 1 : 0) + (b <= d ? 1 : 0) + (c <= d ? 1 : 0)
        mask[j] = ra >= prune ? 1 : 0
        mask[j + 1] = rb >= prune ? 1 : 0
        mask[j + 2] = rc >= prune ? 1 : 0
        mask[j + 3] = rd >= prune ? 1 : 0
        j += 4
    }
}
