import PruneKit
import Testing

@Suite("Calibration statistics")
struct StatisticsTests {
    func batch(_ rng: inout TestRandom, tokens: Int, features: Int) throws -> Matrix<Float> {
        try Matrix(rows: tokens, cols: features, values: (0..<(tokens * features)).map { i in rng.normal() * Float(1 + i % features) + 3 })
    }

    @Test("merging shards equals one pass over the concatenated data")
    func mergeEqualsOnePass() throws {
        var rng = TestRandom(5)
        let features = 17
        let batches = try [3, 50, 1, 200, 7].map { try batch(&rng, tokens: $0, features: features) }
        var shardA = try ActivationStatistics(features: features)
        var shardB = try ActivationStatistics(features: features)
        for (i, b) in batches.enumerated() {
            if i % 2 == 0 { try shardA.accumulate(b) } else { try shardB.accumulate(b) }
        }
        try shardA.merge(shardB)
        let all = try Matrix(rows: batches.map(\.rows).reduce(0, +), cols: features, values: batches.flatMap(\.values))
        var single = try ActivationStatistics(features: features)
        try single.accumulate(all)
        #expect(shardA.count == single.count)
        for (a, b) in zip(try shardA.mean() + shardA.variance() + shardA.l2Norm(), try single.mean() + single.variance() + single.l2Norm()) {
            #expect(abs(a - b) <= 1e-12 * max(abs(b), 1e-300))
        }
        // Against a direct float64 computation.
        let x = all.values.map(Double.init)
        let n = Double(all.rows)
        for j in 0..<features {
            let column = stride(from: j, to: x.count, by: features).map { x[$0] }
            let mean = column.reduce(0, +) / n
            let variance = column.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / n
            #expect(abs(try single.mean()[j] - mean) <= 1e-12 * abs(mean))
            #expect(abs(try single.variance()[j] - variance) <= 1e-12 * variance)
            #expect(abs(single.l2Norm()[j] - column.map { $0 * $0 }.reduce(0, +).squareRoot()) <= 1e-12 * single.l2Norm()[j])
        }
    }

    @Test("accumulating listed rows equals accumulating the matrix of those rows, byte for byte")
    func listedRows() throws {
        var rng = TestRandom(21)
        for (tokens, features) in [(1, 3), (90, 300), (520, 260)] {
            let x = try batch(&rng, tokens: tokens, features: features)
            let picked = (0..<(tokens + 3)).map { ($0 * 7 + 2) % tokens }     // unsorted, with repeats
            let gathered = try Matrix(rows: picked.count, cols: features,
                                      values: picked.flatMap { r in x.values[(r * features)..<((r + 1) * features)] })
            var byMatrix = try ActivationStatistics(features: features, gram: features <= 300)
            var byRows = try ActivationStatistics(features: features, gram: features <= 300)
            try byMatrix.accumulate(gathered)
            try byRows.accumulate(x, rows: picked)
            #expect(byRows.serialized() == byMatrix.serialized())
            try byRows.accumulate(x, rows: [])
            #expect(byRows == byMatrix)
            #expect(throws: PruneKitError.self) { try byRows.accumulate(x, rows: [0, tokens]) }
            #expect(byRows == byMatrix)
        }
    }

    @Test("serialization round-trips and refuses damaged bytes")
    func serialization() throws {
        var rng = TestRandom(9)
        var stats = try ActivationStatistics(features: 5)
        try stats.accumulate(try batch(&rng, tokens: 20, features: 5))
        let bytes = stats.serialized()
        #expect(bytes.count == stats.serializedSize)
        #expect(try ActivationStatistics(serialized: bytes) == stats)
        for cut in [0, 10, 39, bytes.count - 1] {
            #expect(throws: PruneKitError.self) { try ActivationStatistics(serialized: Array(bytes.prefix(cut))) }
        }
        for position in [0, 8, 12, 20, 40, bytes.count - 3] {
            var damaged = bytes
            damaged[position] ^= 0x10
            do {
                _ = try ActivationStatistics(serialized: damaged)
                Issue.record("accepted damaged byte \(position)")
            } catch {
                #expect(error.status == .corruptData)
            }
        }
        #expect(throws: PruneKitError.self) { try ActivationStatistics(serialized: bytes + [0]) }
    }

    @Test("a non-finite activation leaves the accumulator unchanged")
    func nonFiniteBatch() throws {
        var stats = try ActivationStatistics(features: 3)
        try stats.accumulate(try Matrix(rows: 1, cols: 3, values: [Float(1), 2, 3]))
        let before = stats
        do {
            try stats.accumulate(try Matrix(rows: 2, cols: 3, values: [Float(1), 2, 3, 4, .infinity, 6]))
            Issue.record("accepted infinity")
        } catch {
            #expect(error.status == .nonFinite)
            #expect(error.message.contains("token 1, feature 1"))
        }
        #expect(stats == before)
        #expect(throws: PruneKitError.self) { try ActivationStatistics(features: 3).mean() }
    }
}
