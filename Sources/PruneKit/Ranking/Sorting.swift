/// Full rankings, where a caller needs the whole order rather than a cut (structure selection,
/// progressive steps).

/// `positions` (ascending) sorted by (scores[position], position) ascending, -0.0 equal to
/// +0.0: a stable least-significant-byte radix sort of the scores' order keys, so equal scores
/// keep their position order. Bytes in which all keys agree are skipped (most of a double's
/// high bytes, for scores of one scale).
func rankAscending(_ scores: [Double], _ positions: [Int]) -> [Int] {
    let n = positions.count
    var keys = positions.map { scores[$0].orderKey64 }
    var order = positions
    var otherKeys = [UInt64](repeating: 0, count: n), otherOrder = [Int](repeating: 0, count: n)
    var counts = [Int](repeating: 0, count: 256)
    for shift in stride(from: UInt64(0), to: 64, by: 8) {
        for d in 0..<256 { counts[d] = 0 }
        for k in keys { counts[Int(truncatingIfNeeded: k >> shift) & 0xFF] += 1 }
        if counts.contains(n) { continue }   // one digit for all: the pass would move nothing
        var start = 0
        for d in 0..<256 { (counts[d], start) = (start, start + counts[d]) }
        keys.withUnsafeBufferPointer { k in
            order.withUnsafeBufferPointer { o in
                otherKeys.withUnsafeMutableBufferPointer { k2 in
                    otherOrder.withUnsafeMutableBufferPointer { o2 in
                        counts.withUnsafeMutableBufferPointer { c in
                            for i in 0..<n {
                                let d = Int(truncatingIfNeeded: k[i] >> shift) & 0xFF
                                let to = c[d]
                                c[d] = to + 1
                                k2[to] = k[i]
                                o2[to] = o[i]
                            }
                        }
                    }
                }
            }
        }
        swap(&keys, &otherKeys)
        swap(&order, &otherOrder)
    }
    return order
}
