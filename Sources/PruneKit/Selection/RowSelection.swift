/// Per-row selection: the k-th smallest (key, column) of each row, found by bracketing it with
/// a sample and selecting exactly among the entries inside the bracket.
struct RowSelector {
    static let sampleSize = 256
    static let bracket = 24

    /// The packed (key << 32 | column) of the entry of rank `k` (1-based) among `keys[0..<n]`;
    /// every entry at or below it in (key, column) order is pruned. Requires 0 < k < n.
    /// `candidates` holds n elements, `sample` `sampleSize`.
    @inline(__always)
    static func threshold(keys: UnsafePointer<UInt32>, n: Int, k: Int,
                          candidates: UnsafeMutablePointer<UInt64>, sample: UnsafeMutablePointer<UInt64>) -> UInt64 {
        if n > 4 * sampleSize {
            // Bracket the target rank with two sample order statistics.
            let s = sampleSize
            for i in 0..<s { sample[i] = UInt64(keys[i * n / s]) << 32 | UInt64(i) }
            let r = k * s / n
            let lowRank = r - bracket, highRank = r + bracket
            let low: UInt32 = lowRank < 0 ? 0 : UInt32(truncatingIfNeeded: quickselect(sample, count: s, rank: lowRank) >> 32)
            let high: UInt32 = highRank >= s ? .max : UInt32(truncatingIfNeeded: quickselect(sample, count: s, rank: highRank) >> 32)
            let span = UInt64(high &- low), low64 = UInt64(low)
            var below = 0, found = 0
            for j in 0..<n {
                // Sign bits of 64-bit differences instead of comparisons: the compiler turns a
                // conditional increment into a branch, which mispredicts inside the bracket.
                let key = UInt64(keys[j])
                let offset = key &- low64  // wraps (top bit set) when key < low
                let isBelow = offset >> 63
                let isAbove = (span &- offset) >> 63  // offset > span, when not below
                below &+= Int(truncatingIfNeeded: isBelow)
                candidates[found] = key << 32 | UInt64(j)
                found &+= Int(truncatingIfNeeded: (isBelow | isAbove) ^ 1)
            }
            let target = k - 1 - below
            if target >= 0 && target < found {
                return quickselect(candidates, count: found, rank: target)
            }
        }
        for j in 0..<n { candidates[j] = UInt64(keys[j]) << 32 | UInt64(j) }
        return quickselect(candidates, count: n, rank: k - 1)
    }

    /// mask[j] = 1 unless (keys[j], j) <= threshold in packed order.
    @inline(__always)
    static func writeMask(keys: UnsafePointer<UInt32>, n: Int, threshold: UInt64, mask: UnsafeMutablePointer<UInt8>) {
        let tKey = UInt32(truncatingIfNeeded: threshold >> 32)
        let tCol = UInt32(truncatingIfNeeded: threshold)
        for j in 0..<n {
            let key = keys[j]
            let keep = key > tKey || (key == tKey && UInt32(truncatingIfNeeded: j) > tCol)
            mask[j] = keep ? 1 : 0
        }
    }
}

/// Keys of a scored row.
@inline(__always)
func computeKeys(_ scores: UnsafePointer<Float>, _ keys: UnsafeMutablePointer<UInt32>, count: Int) {
    for j in 0..<count { keys[j] = orderKey(scores[j]) }
}

/// N:M selection of one row: in each run of m columns, keep the n with the highest
/// (key, position) and prune the rest.
@inline(__always)
func writeNMMask(keys: UnsafePointer<UInt32>, cols: Int, n: Int, m: Int, mask: UnsafeMutablePointer<UInt8>,
                 packed: UnsafeMutablePointer<UInt64>) {
    let prune = m - n
    if m == 4 {
        writeNM4Mask(keys: keys, cols: cols, prune: prune, mask: mask)
    } else if m <= 16 {
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

/// M = 4: four groups at a time. The rank of an entry counts the group's entries before it in
/// (key, index) order: rotation d compares entry i with entry (i + d) % 4, which comes before
/// it on equal keys exactly when it wrapped around (i + d >= 4). A rotation is two unaligned
/// loads (at +d and d - 4) blended by lane, so `keys` must be readable 4 entries before its
/// start and after its end (RowScratch pads them).
@inline(__always)
func writeNM4Mask(keys: UnsafePointer<UInt32>, cols: Int, prune: Int, mask: UnsafeMutablePointer<UInt8>) {
    typealias V = SIMD16<Int32>
    let wrap1 = SIMDMask<V>(V(0, 0, 0, -1, 0, 0, 0, -1, 0, 0, 0, -1, 0, 0, 0, -1))
    let wrap2 = SIMDMask<V>(V(0, 0, -1, -1, 0, 0, -1, -1, 0, 0, -1, -1, 0, 0, -1, -1))
    let wrap3 = SIMDMask<V>(V(0, -1, -1, -1, 0, -1, -1, -1, 0, -1, -1, -1, 0, -1, -1, -1))
    let one = V(repeating: 1), zero = V(repeating: 0)
    let threshold = V(repeating: Int32(prune))
    let raw = UnsafeRawPointer(keys)
    @inline(__always) func load(_ at: Int) -> V {
        // Signed view of the keys (key ^ 0x80000000 orders like the unsigned key).
        V(truncatingIfNeeded: raw.loadUnaligned(fromByteOffset: 4 * at, as: SIMD16<UInt32>.self) ^ 0x8000_0000)
    }
    var j = 0
    while j + 16 <= cols {
        let v = load(j)
        let o1 = load(j + 1).replacing(with: load(j - 3), where: wrap1)
        let o2 = load(j + 2).replacing(with: load(j - 2), where: wrap2)
        let o3 = load(j + 3).replacing(with: load(j - 1), where: wrap3)
        var rank = zero.replacing(with: one, where: (o1 .< v) .| (wrap1 .& (o1 .== v)))
        rank &+= zero.replacing(with: one, where: (o2 .< v) .| (wrap2 .& (o2 .== v)))
        rank &+= zero.replacing(with: one, where: (o3 .< v) .| (wrap3 .& (o3 .== v)))
        let keep = SIMD16<UInt8>(truncatingIfNeeded: zero.replacing(with: one, where: rank .>= threshold))
        UnsafeMutableRawPointer(mask + j).storeBytes(of: keep, as: SIMD16<UInt8>.self)
        j += 16
    }
    while j < cols {
        let a = keys[j], b = keys[j + 1], c = keys[j + 2], d = keys[j + 3]
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
