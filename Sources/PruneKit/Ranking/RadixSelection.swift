/// Radix selection, for groups whose keys are recomputed in each pass instead of stored (layer and
/// global selection stream whole matrices; gating allocates nothing): the key of rank k is found a
/// digit at a time, most significant first, from histograms of the keys that agree with the digits
/// found so far.
enum RadixSelection {
    /// The digit whose bucket holds the entry of rank `rank` (1-based, ascending) and how many
    /// entries lie in lower buckets. `histograms` holds `copies` histograms of `digits` counters
    /// one after another (one per worker), summed here.
    @inline(__always)
    static func bucket<Counter: FixedWidthInteger>(_ histograms: UnsafePointer<Counter>, digits: Int, copies: Int = 1,
                                                   rank: Int) -> (digit: Int, below: Int) {
        var below = 0
        for d in 0..<digits {
            var count = 0
            for c in 0..<copies { count &+= Int(histograms[c * digits + d]) }
            if below + count >= rank { return (d, below) }
            below += count
        }
        return (digits - 1, below)  // unreachable for 0 < rank <= total
    }
}
