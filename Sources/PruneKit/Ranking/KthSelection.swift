/// The k-th selection: the entry of rank k, in (key, position) order, of a group whose keys are
/// in memory. Per-row selection (a row of scores), SparseGPT's blocks and ADMM's projections
/// (a block or layer of w^2 / d^2) use it; layer and global selection, whose group is never
/// materialised, select by radix passes over recomputed keys (`RadixSelection`).
enum KthSelection {
    /// The entry of rank `k` (1-based, 0 < k <= n) among `keys[0..<n]` in (key, position) order:
    /// its key and its position. Exactly the entries at or below it in that order are pruned.
    ///
    /// One histogram pass over 2^`binBits` linear bins between `lowest` and `highest` (the keys'
    /// range) finds the bin holding rank k; only that bin's entries are gathered and selected
    /// exactly. 32-bit keys are selected packed with their position (key << 32 | position; then
    /// n < 2^32), wider keys alone, the position then found among the bin's equal keys in order.
    /// The bin count changes the speed, never the result.
    ///
    /// - Parameters:
    ///   - keys: read through a raw pointer, so they may be the bit patterns of nonnegative float
    ///     scores (which order as the scores do) as well as order keys.
    ///   - candidates: for 32-bit keys, n elements of scratch; for wider keys ignored (the bin's
    ///     entries go to a temporary of their own size).
    ///   - bins: 2 << `binBits` counters of scratch (a counter type that holds n).
    @inline(__always)
    static func select<Key: FixedWidthInteger & UnsignedInteger, Counter: FixedWidthInteger>(
        keys: UnsafeRawPointer, n: Int, k: Int, lowest: Key, highest: Key, binBits: Int,
        candidates: UnsafeMutablePointer<UInt64>?, bins: UnsafeMutablePointer<Counter>
    ) -> (key: Key, position: Int) {
        let size = MemoryLayout<Key>.stride
        @inline(__always) func key(_ j: Int) -> Key { keys.load(fromByteOffset: size * j, as: Key.self) }
        // Shift so that (key - lowest) >> shift < 2^binBits.
        let binCount = 1 << binBits
        let shift = Key(truncatingIfNeeded: max(0, (Key.bitWidth - (highest &- lowest).leadingZeroBitCount) - binBits))
        @inline(__always) func bin(_ x: Key) -> Int { Int(truncatingIfNeeded: (x &- lowest) &>> shift) }
        // Two interleaved histograms, so that neighbours in the same bin do not wait on each
        // other's increment; summed afterwards.
        bins.initialize(repeating: 0, count: 2 * binCount)
        let second = bins + binCount
        var j0 = 0
        while j0 + 2 <= n {
            bins[bin(key(j0))] &+= 1
            second[bin(key(j0 + 1))] &+= 1
            j0 += 2
        }
        if j0 < n { bins[bin(key(j0))] &+= 1 }
        for b in 0..<binCount { bins[b] &+= second[b] }
        var below = 0, target = 0
        while below + Int(bins[target]) < k {
            below += Int(bins[target])
            target += 1
        }
        let inBin = Int(bins[target])
        guard Key.bitWidth == 32, let candidates else {
            return selectInBin(key, n: n, rank: k - below, inBin: inBin) { bin($0) == target }
        }
        let k32 = UInt32(truncatingIfNeeded: lowest), s32 = UInt32(truncatingIfNeeded: shift)
        let packed: UInt64
        if inBin < n / 2 {
            // Few entries fall in one bin: test 8 at a time, gather lane by lane on a hit.
            var found = 0
            let t32 = UInt32(target)
            let lowV = SIMD8<UInt32>(repeating: k32), targetV = SIMD8<UInt32>(repeating: t32)
            let shiftV = SIMD8<UInt32>(repeating: s32)
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
                let x = keys.load(fromByteOffset: 4 * j, as: UInt32.self)
                if (x &- k32) &>> s32 == t32 {
                    candidates[found] = UInt64(x) << 32 | UInt64(j)
                    found &+= 1
                }
                j += 1
            }
            packed = quickselect(candidates, count: found, rank: k - 1 - below)
        } else {
            for j in 0..<n { candidates[j] = UInt64(keys.load(fromByteOffset: 4 * j, as: UInt32.self)) << 32 | UInt64(j) }
            packed = quickselect(candidates, count: n, rank: k - 1)
        }
        return (Key(truncatingIfNeeded: packed >> 32), Int(truncatingIfNeeded: packed & 0xFFFF_FFFF))
    }

    /// Wide keys: the entry of rank `rank` (1-based) among the `inBin` entries for which `inTarget`
    /// holds, by (key, position). Their keys are selected alone; of the entries equal to the
    /// selected key, the position is that of the one the rank reaches, in position order.
    @inline(__always)
    private static func selectInBin<Key: FixedWidthInteger>(_ key: (Int) -> Key, n: Int, rank: Int, inBin: Int,
                                                              inTarget: (Key) -> Bool) -> (key: Key, position: Int) {
        withUnsafeTemporaryAllocation(of: Int.self, capacity: inBin) { positions in
            withUnsafeTemporaryAllocation(of: Key.self, capacity: inBin) { values in
                var found = 0
                for j in 0..<n where inTarget(key(j)) {
                    positions[found] = j
                    values[found] = key(j)
                    found += 1
                }
                let threshold = quickselect(values.baseAddress!, count: found, rank: rank - 1)
                var ties = rank
                for i in 0..<found where values[i] < threshold { ties -= 1 }
                for i in 0..<found where key(positions[i]) == threshold {
                    ties -= 1
                    if ties == 0 { return (threshold, positions[i]) }
                }
                return (threshold, positions[found - 1])  // unreachable: the selected key is among them
            }
        }
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

/// Rearranges `a[0..<count]` so that `a[k]` holds the element of rank k (0-based), with smaller
/// or equal elements before it and larger or equal after. Falls back to sorting a range that
/// partitions badly.
func quickselect<Element: FixedWidthInteger>(_ a: UnsafeMutablePointer<Element>, count: Int, rank k: Int) -> Element {
    var lo = 0, hi = count - 1
    var budget = 2 * (Int.bitWidth - count.leadingZeroBitCount) + 8
    while hi - lo > 24 {
        budget -= 1
        if budget == 0 {
            var range = UnsafeMutableBufferPointer(start: a + lo, count: hi - lo + 1)
            range.sort()
            return a[k]
        }
        // Median of three as pivot, moved to a[hi - 1] with sentinels at both ends.
        let mid = lo + (hi - lo) / 2
        if a[mid] < a[lo] { swap(&a[mid], &a[lo]) }
        if a[hi] < a[lo] { swap(&a[hi], &a[lo]) }
        if a[hi] < a[mid] { swap(&a[hi], &a[mid]) }
        swap(&a[mid], &a[hi - 1])
        let pivot = a[hi - 1]
        var i = lo, j = hi - 1
        while true {
            repeat { i += 1 } while a[i] < pivot
            repeat { j -= 1 } while pivot < a[j]
            if i >= j { break }
            swap(&a[i], &a[j])
        }
        swap(&a[i], &a[hi - 1])
        if k < i { hi = i - 1 } else if k > i { lo = i + 1 } else { return a[k] }
    }
    // Insertion sort of the small remainder.
    if hi > lo {
        for i in (lo + 1)...hi {
            let x = a[i]
            var j = i - 1
            while j >= lo && a[j] > x { a[j + 1] = a[j]; j -= 1 }
            a[j + 1] = x
        }
    }
    return a[k]
}
