/// Per-row selection: the k-th smallest (key, column) of each row. One histogram pass over
/// linear bins between the row's smallest and largest key finds the bin holding rank k; only
/// that bin's entries are gathered and selected exactly.
struct RowSelector {
    static let binCount = 1024

    /// The packed (key << 32 | column) of the entry of rank `k` (1-based) among `keys[0..<n]`;
    /// every entry at or below it in (key, column) order is pruned. Requires 0 < k < n.
    /// `candidates` holds n elements, `bins` `binCount`.
    @inline(__always)
    static func threshold(keys: UnsafePointer<UInt32>, n: Int, k: Int, lowest: UInt32, highest: UInt32,
                          candidates: UnsafeMutablePointer<UInt64>, bins: UnsafeMutablePointer<UInt32>) -> UInt64 {
        // Shift so that (key - lowest) >> shift < binCount.
        let range = highest &- lowest
        let shift = max(0, (32 - range.leadingZeroBitCount) - 10)
        bins.initialize(repeating: 0, count: binCount)
        for j in 0..<n { bins[Int(truncatingIfNeeded: (keys[j] &- lowest) &>> UInt32(shift))] &+= 1 }
        var below = 0, bin = 0
        while below + Int(bins[bin]) < k {
            below += Int(bins[bin])
            bin += 1
        }
        let inBin = Int(bins[bin])
        if inBin < n / 2 {
            // Few entries fall in one of 1024 bins, so this branch is nearly always predicted.
            var found = 0
            let target = UInt32(bin)
            for j in 0..<n where (keys[j] &- lowest) &>> UInt32(shift) == target {
                candidates[found] = UInt64(keys[j]) << 32 | UInt64(j)
                found &+= 1
            }
            return quickselect(candidates, count: found, rank: k - 1 - below)
        }
        for j in 0..<n { candidates[j] = UInt64(keys[j]) << 32 | UInt64(j) }
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

/// The float score whose `orderKey` is `key` (+0.0 for the zero key).
@inline(__always)
func scoreOfKey(_ key: UInt32) -> Float {
    let bits = key & 0x8000_0000 != 0 ? key ^ 0x8000_0000 : ~key
    return Float(bitPattern: bits)
}

/// Keys of a scored row; returns the smallest and largest key.
@inline(__always)
@discardableResult
func computeKeys(_ scores: UnsafePointer<Float>, _ keys: UnsafeMutablePointer<UInt32>, count: Int) -> (UInt32, UInt32) {
    var lowest = UInt32.max, highest: UInt32 = 0
    for j in 0..<count {
        let key = orderKey(scores[j])
        keys[j] = key
        lowest = min(lowest, key)
        highest = max(highest, key)
    }
    return (lowest, highest)
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

/// M = 4 on finite float32 scores: four groups at a time. The rank of an entry counts the
/// group's entries before it in (score, index) order (-0.0 == +0.0, as for keys): rotation d
/// compares entry i with entry (i + d) % 4, which comes before it on equal scores exactly when
/// it wrapped around (i + d >= 4). A rotation is two unaligned loads (at +d and d - 4) blended
/// by lane, so `scores` must be readable 4 entries before its start and after its end
/// (RowScratch pads them).
@inline(__always)
func writeNM4Mask(scores: UnsafePointer<Float>, cols: Int, prune: Int, mask: UnsafeMutablePointer<UInt8>) {
    typealias V = SIMD16<Float>
    typealias I = SIMD16<Int32>
    let wrap1 = SIMDMask<I>(I(0, 0, 0, -1, 0, 0, 0, -1, 0, 0, 0, -1, 0, 0, 0, -1))
    let wrap2 = SIMDMask<I>(I(0, 0, -1, -1, 0, 0, -1, -1, 0, 0, -1, -1, 0, 0, -1, -1))
    let wrap3 = SIMDMask<I>(I(0, -1, -1, -1, 0, -1, -1, -1, 0, -1, -1, -1, 0, -1, -1, -1))
    let one = I(repeating: 1), zero = I(repeating: 0)
    let threshold = I(repeating: Int32(prune))
    let raw = UnsafeRawPointer(scores)
    @inline(__always) func load(_ at: Int) -> V { raw.loadUnaligned(fromByteOffset: 4 * at, as: V.self) }
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
