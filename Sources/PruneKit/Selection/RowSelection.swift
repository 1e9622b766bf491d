/// Per-row selection: the k-th smallest (key, column) of each row. One histogram pass over
/// linear bins between the row's smallest and largest key finds the bin holding rank k; only
/// that bin's entries are gathered and selected exactly.
struct RowSelector {
    static let binCount = 1024

    /// The packed (key << 32 | column) of the entry of rank `k` (1-based) among `keys[0..<n]`;
    /// every entry at or below it in (key, column) order is pruned. Requires 0 < k < n.
    /// `candidates` holds n elements, `bins` `binCount`.
    @inline(__always)
    /// `keys` is read through a raw pointer, so it may be the bit patterns of nonnegative float
    /// scores (which order as the scores do) as well as `orderKey`s.
    static func threshold(keys: UnsafeRawPointer, n: Int, k: Int, lowest: UInt32, highest: UInt32,
                          candidates: UnsafeMutablePointer<UInt64>, bins: UnsafeMutablePointer<UInt32>) -> UInt64 {
        @inline(__always) func key(_ j: Int) -> UInt32 { keys.load(fromByteOffset: 4 * j, as: UInt32.self) }
        // Shift so that (key - lowest) >> shift < binCount.
        let range = highest &- lowest
        let shift = max(0, (32 - range.leadingZeroBitCount) - 10)
        // Two interleaved histograms, so that neighbours in the same bin do not wait on each
        // other's increment; summed afterwards.
        bins.initialize(repeating: 0, count: 2 * binCount)
        let second = bins + binCount
        let s32 = UInt32(shift)
        var j0 = 0
        while j0 + 2 <= n {
            let a = keys.load(fromByteOffset: 4 * j0, as: UInt32.self), b = keys.load(fromByteOffset: 4 * j0 + 4, as: UInt32.self)
            bins[Int(truncatingIfNeeded: (a &- lowest) &>> s32)] &+= 1
            second[Int(truncatingIfNeeded: (b &- lowest) &>> s32)] &+= 1
            j0 += 2
        }
        if j0 < n { bins[Int(truncatingIfNeeded: (key(j0) &- lowest) &>> s32)] &+= 1 }
        for b in 0..<binCount { bins[b] &+= second[b] }
        var below = 0, bin = 0
        while below + Int(bins[bin]) < k {
            below += Int(bins[bin])
            bin += 1
        }
        let inBin = Int(bins[bin])
        if inBin < n / 2 {
            // Few entries fall in one of 1024 bins: test 8 at a time, gather lane by lane on a hit.
            var found = 0
            let target = UInt32(bin)
            let lowV = SIMD8<UInt32>(repeating: lowest), targetV = SIMD8<UInt32>(repeating: target)
            let shiftV = SIMD8<UInt32>(repeating: UInt32(shift))
            var j = 0
            while j + 8 <= n {
                let v = keys.loadUnaligned(fromByteOffset: 4 * j, as: SIMD8<UInt32>.self)
                let hit = ((v &- lowV) &>> shiftV) .== targetV
                if anyLane(hit) {
                    for lane in 0..<8 where hit[lane] {
                        candidates[found] = UInt64(v[lane]) << 32 | UInt64(j + lane)
                        found &+= 1
                    }
                }
                j += 8
            }
            while j < n {
                if (key(j) &- lowest) &>> UInt32(shift) == target {
                    candidates[found] = UInt64(key(j)) << 32 | UInt64(j)
                    found &+= 1
                }
                j += 1
            }
            return quickselect(candidates, count: found, rank: k - 1 - below)
        }
        for j in 0..<n { candidates[j] = UInt64(key(j)) << 32 | UInt64(j) }
        return quickselect(candidates, count: n, rank: k - 1)
    }

    /// mask[j] = 1 unless (score j, j) <= (threshold score, threshold column): compared as
    /// floats, which order exactly as their keys (scores are finite here; -0 == +0).
    @inline(__always)
    static func writeMask(scores: UnsafePointer<Float>, n: Int, threshold: UInt64, mask: UnsafeMutablePointer<UInt8>) {
        let tScore = scoreOfKey(UInt32(truncatingIfNeeded: threshold >> 32))
        let tCol = Int(truncatingIfNeeded: threshold & 0xFFFF_FFFF)
        // Columns up to tCol keep only strictly larger scores; later ones keep ties too.
        let split = min(n, tCol + 1)
        for j in 0..<split { mask[j] = scores[j] > tScore ? 1 : 0 }
        for j in split..<n { mask[j] = scores[j] >= tScore ? 1 : 0 }
    }
}

/// Whether any lane of `mask` is set: the two halves OR-ed and read as two 64-bit words, which
/// lowers to a few instructions where the generic reduction extracts lane by lane.
@inline(__always)
func anyLane(_ mask: SIMDMask<SIMD8<Int32>>) -> Bool {
    let lanes = SIMD8<Int32>(repeating: 0).replacing(with: -1, where: mask)
    let words = unsafeBitCast(lanes.lowHalf | lanes.highHalf, to: SIMD2<UInt64>.self)
    return words[0] | words[1] != 0
}

/// The float score whose `orderKey` is `key` (+0.0 for the zero key).
@inline(__always)
func scoreOfKey(_ key: UInt32) -> Float {
    let bits = key & 0x8000_0000 != 0 ? key ^ 0x8000_0000 : ~key
    return Float(bitPattern: bits)
}

/// N:M selection of one row: in each run of m columns, keep the n with the highest
/// (key, position) and prune the rest.
@inline(__always)
func writeNMMask(keys: UnsafePointer<UInt32>, cols: Int, n: Int, m: Int, mask: UnsafeMutablePointer<UInt8>,
                 packed: UnsafeMutablePointer<UInt64>) {
    let prune = m - n
    if m <= 16 {  // (M = 4 normally takes writeNM4Mask on scores)
        var g = 0
        while g < cols {
            for i in 0..<m {
                let x = keys[g + i]
                var rank = 0
                for j in 0..<m {
                    let y = keys[g + j]
                    rank &+= (y < x || (y == x && j < i)) ? 1 : 0
                }
                mask[g + i] = rank >= prune ? 1 : 0
            }
            g += m
        }
    } else {
        var g = 0
        while g < cols {
            for i in 0..<m { packed[i] = UInt64(keys[g + i]) << 32 | UInt64(i) }
            var group = UnsafeMutableBufferPointer(start: packed, count: m)
            group.sort()
            for r in 0..<m { mask[g + Int(truncatingIfNeeded: packed[r] & 0xFFFF_FFFF)] = r >= prune ? 1 : 0 }
            g += m
        }
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
