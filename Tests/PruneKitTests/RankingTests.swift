@testable import PruneKit
import Testing

/// The ranking module against the contract written out by sorting: (key, position) ascending,
/// the first k pruned. Keys are drawn from a few values, so that ties decide most cuts.
@Suite struct RankingTests {
    /// The (key, position) of rank k (1-based) by sorting.
    func reference<Key: Comparable>(_ keys: [Key], rank k: Int) -> (key: Key, position: Int) {
        let order = keys.indices.sorted { (keys[$0], $0) < (keys[$1], $1) }
        return (keys[order[k - 1]], order[k - 1])
    }

    func check<Key: FixedWidthInteger & UnsignedInteger>(_ keys: [Key], binBits: Int) {
        let n = keys.count
        var candidates = [UInt64](repeating: 0, count: n)
        var bins = [Int](repeating: 0, count: 2 << binBits)
        for k in Set([1, 2, n / 3, n / 2, n - 1, n]) where k >= 1 && k <= n {
            let got = keys.withUnsafeBytes { raw in
                candidates.withUnsafeMutableBufferPointer { c in
                    bins.withUnsafeMutableBufferPointer { b in
                        KthSelection.select(keys: raw.baseAddress!, n: n, k: k, lowest: keys.min()!, highest: keys.max()!,
                                            binBits: binBits, candidates: c.baseAddress!, bins: b.baseAddress!)
                    }
                }
            }
            let want = reference(keys, rank: k)
            #expect(got.key == want.key && got.position == want.position, "n \(n), k \(k)")
        }
    }

    @Test func kthSelectionMatchesSorting() {
        var rng = TestRandom(17)
        for n in [1, 7, 8, 9, 100, 1000, 5000] {
            for spread: UInt64 in [1, 3, 50, 1 << 40] {
                let wide = (0..<n).map { _ in (rng.next() % spread) &* 0x1_0000_0001 &+ 12345 }
                check(wide, binBits: 12)
                check(wide.map { UInt32(truncatingIfNeeded: $0 >> 8) }, binBits: 10)
                check(wide.map { UInt32(truncatingIfNeeded: $0 >> 8) }, binBits: 2)
            }
        }
    }

    @Test func smallGroupRankingMatchesSorting() {
        var rng = TestRandom(23)
        for m in [2, 3, 4, 8, 16, 17, 32, 64] {
            for trial in 0..<20 {
                let keys32 = (0..<m).map { _ in UInt32(rng.next() % (trial % 2 == 0 ? 3 : 1000)) }
                let keys64 = keys32.map { UInt64($0) << 32 | 7 }
                var packed = [UInt64](repeating: 0, count: m)
                for prune in 1..<m {
                    let order = (0..<m).sorted { (keys32[$0], $0) < (keys32[$1], $1) }
                    var want = [UInt8](repeating: 1, count: m)
                    for i in order.prefix(prune) { want[i] = 0 }
                    var mask = [UInt8](repeating: 9, count: m), flags = [UInt8](repeating: 9, count: m)
                    keys32.withUnsafeBufferPointer { k in
                        packed.withUnsafeMutableBufferPointer { p in
                            GroupRanking.markLowest(k.baseAddress!, count: m, prune: prune, pruned: 0, into: &mask,
                                                    packed: p.baseAddress!)
                        }
                    }
                    keys64.withUnsafeBufferPointer { k in
                        GroupRanking.markLowest(k.baseAddress!, count: m, prune: prune, pruned: 1, into: &flags)
                    }
                    #expect(mask == want, "m \(m), prune \(prune)")
                    #expect(flags == want.map { 1 - $0 }, "m \(m), prune \(prune)")
                }
            }
        }
    }

    @Test func rankAscendingIsTheContractOrder() {
        var rng = TestRandom(29)
        let scores = (0..<500).map { _ in Double(Int(rng.next() % 9)) - 4 } + [-0.0, 0.0, -0.0]
        let positions = Array(0..<scores.count)
        let want = positions.sorted { (scores[$0] + 0, $0) < (scores[$1] + 0, $1) }
        #expect(rankAscending(scores, positions) == want)
    }

    @Test func topChannelsKeepingAllOrOne() throws {
        var rng = TestRandom(31)
        let (rows, cols) = (5, 40)
        let values = (0..<(rows * cols)).map { _ in Float(Int(rng.next() % 3)) }
        let scores = try Matrix<Float>(rows: rows, cols: cols, values: values)
        #expect(try topChannels(scores, k: cols) == (0..<rows).flatMap { _ in (0..<cols).map(Int64.init) })
        let best = try topChannels(scores, k: 1)
        for t in 0..<rows {
            let row = Array(values[(t * cols)..<((t + 1) * cols)])
            let top = row.indices.max { (row[$0], $0) < (row[$1], $1) }!
            #expect(best[t] == Int64(top))
        }
    }
}
