/// Rearranges `a[0..<count]` so that `a[k]` holds the element of rank k (0-based), with smaller
/// elements before it and larger after. Elements are distinct in every use here (keys packed
/// with their index). Falls back to sorting a range that partitions badly.
func quickselect(_ a: UnsafeMutablePointer<UInt64>, count: Int, rank k: Int) -> UInt64 {
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
