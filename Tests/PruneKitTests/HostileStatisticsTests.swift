import PruneKit
import Testing

/// Statistics bytes edited by a hostile writer who recomputes the checksum (FNV-1a 64, the last
/// 8 bytes), so only the reader's checks of the contents stand between them and an accumulator.
struct CraftedStatistics {
    var bytes: [UInt8]
    let features: Int

    init(_ stats: ActivationStatistics) {
        bytes = stats.serialized()
        features = stats.features
    }

    /// Offsets of the doubles: mean, M2, sum of squares, |x| sums, zero counts, then the Gram matrix.
    func offset(array: Int, _ index: Int) -> Int { 32 + 8 * (array * features + index) }
    func gramOffset(_ i: Int, _ j: Int, activity: Bool = true) -> Int { 32 + 8 * ((activity ? 5 : 3) * features + i * features + j) }

    mutating func set(_ offset: Int, _ value: UInt64) {
        for i in 0..<8 { bytes[offset + i] = UInt8(truncatingIfNeeded: value >> (8 * i)) }
    }

    mutating func set(_ offset: Int, _ value: Double) { set(offset, value.bitPattern) }

    func double(_ offset: Int) -> Double {
        Double(bitPattern: (0..<8).reduce(UInt64(0)) { $0 | UInt64(bytes[offset + $1]) << (8 * $1) })
    }

    /// The bytes with a valid checksum.
    var sealed: [UInt8] {
        var out = Array(bytes.dropLast(8))
        var hash: UInt64 = 0xCBF2_9CE4_8422_2325
        for byte in out { hash = (hash ^ UInt64(byte)) &* 0x0000_0100_0000_01B3 }
        for i in 0..<8 { out.append(UInt8(truncatingIfNeeded: hash >> (8 * i))) }
        return out
    }
}

@Suite("Statistics under hostile input")
struct HostileStatisticsTests {
    func sample(features: Int = 3, gram: Bool = false) throws -> ActivationStatistics {
        var stats = try ActivationStatistics(features: features, gram: gram)
        var rng = TestRandom(31)
        try stats.accumulate(try Matrix<Float>(rows: 16, cols: features, values: (0..<(16 * features)).map { _ in rng.normal() + 0.5 }))
        return stats
    }

    func expectRefused(_ crafted: CraftedStatistics, _ why: String, sourceLocation: SourceLocation = #_sourceLocation) {
        do {
            _ = try ActivationStatistics(serialized: crafted.sealed)
            Issue.record("accepted: \(why)", sourceLocation: sourceLocation)
        } catch {
            #expect(error.status == .corruptData, sourceLocation: sourceLocation)
        }
    }

    @Test("merging an accumulator with itself stops at 2^53 tokens, unchanged and still serializable")
    func countOverflow() throws {
        var stats = try ActivationStatistics(features: 2)
        try stats.accumulate(try Matrix<Float>(rows: 1, cols: 2, values: [1, -2]))
        var merges = 0
        while merges < 63 {
            let before = stats
            do {
                try stats.merge(stats)
            } catch {
                #expect(error.status == .numeric)
                #expect(stats == before)
                break
            }
            merges += 1
        }
        #expect(merges == 53)
        #expect(stats.count == 1 << 53)
        #expect(try stats.variance() == [0, 0])
        #expect(try ActivationStatistics(serialized: stats.serialized()) == stats)
        #expect(throws: PruneKitError.self) { try stats.accumulate(try Matrix<Float>(rows: 1, cols: 2, values: [1, 1])) }
    }

    @Test("float64 activations whose squares overflow are refused before anything changes")
    func sumOfSquaresOverflow() throws {
        var stats = try sample(features: 3, gram: true)
        let before = stats
        do {
            try stats.accumulate(try Matrix<Double>(rows: 2, cols: 3, values: [1, 1e200, 1, 2, 2, 2]))
            Issue.record("accepted 1e200")
        } catch {
            #expect(error.status == .numeric)
            #expect(error.message.contains("feature 1"))
        }
        #expect(stats == before)
        #expect(stats.l2Norm().allSatisfy { $0.isFinite })
        #expect(try ActivationStatistics(serialized: stats.serialized()) == stats)
        // 3e150 squared is 9e300, below the limit: accepted, and the result still loads.
        try stats.accumulate(try Matrix<Double>(rows: 1, cols: 3, values: [3e150, 0, 0]))
        #expect(try ActivationStatistics(serialized: stats.serialized()) == stats)
        // Merging that with itself would pass 2^1000.
        #expect(throws: PruneKitError.self) { try stats.merge(stats) }
    }

    @Test("the reader refuses impossible contents even with a recomputed checksum")
    func impossibleContents() throws {
        let plain = try sample()
        let withGram = try sample(gram: true)
        // The untouched bytes load, resealed or not.
        #expect(try ActivationStatistics(serialized: CraftedStatistics(plain).sealed) == plain)
        #expect(try ActivationStatistics(serialized: CraftedStatistics(withGram).sealed) == withGram)

        var c = CraftedStatistics(plain)
        c.set(24, UInt64(Int64.max))
        expectRefused(c, "count 2^63 - 1")
        c = CraftedStatistics(plain)
        c.set(24, UInt64(1 << 53) + 1)
        expectRefused(c, "count 2^53 + 1")

        c = CraftedStatistics(plain)
        c.set(c.offset(array: 1, 0), c.double(c.offset(array: 2, 0)) * 1.01)
        expectRefused(c, "M2 above the sum of squares")

        // Each part below the sum of squares, but not adding up to it (found by fuzzing: a merge
        // then grew M2 past the sum of squares, and the accumulator's own bytes were refused).
        c = CraftedStatistics(plain)
        let squares = c.double(c.offset(array: 2, 0))
        c.set(c.offset(array: 1, 0), squares)
        c.set(c.offset(array: 0, 0), (squares / Double(plain.count)).squareRoot())
        expectRefused(c, "M2 + n * mean^2 above the sum of squares")

        c = CraftedStatistics(plain)
        c.set(c.offset(array: 0, 2), 1e300)
        expectRefused(c, "a mean its sum of squares cannot give")

        c = CraftedStatistics(plain)
        c.set(c.offset(array: 2, 1), 1.7e308)
        c.set(c.offset(array: 1, 1), 1e308)
        expectRefused(c, "a sum of squares near DBL_MAX")

        c = CraftedStatistics(plain)
        c.set(c.offset(array: 3, 0), 1e300)
        expectRefused(c, "a sum of |x| above sqrt(n * sum of squares)")

        let empty = try ActivationStatistics(features: 3, gram: true)
        c = CraftedStatistics(empty)
        c.set(c.offset(array: 3, 1), 0.5)
        expectRefused(c, "count 0 with a non-zero |x| sum")
        c = CraftedStatistics(empty)
        c.set(c.gramOffset(0, 1), 2.0)
        c.set(c.gramOffset(1, 0), 2.0)
        expectRefused(c, "count 0 with a non-zero Gram matrix")

        c = CraftedStatistics(withGram)
        c.set(c.gramOffset(0, 2), c.double(c.gramOffset(0, 2)) + 1)
        expectRefused(c, "Gram triangles that differ")

        c = CraftedStatistics(withGram)
        c.set(c.gramOffset(1, 1), c.double(c.gramOffset(1, 1)) * 2)
        expectRefused(c, "a Gram diagonal that is not the sum of squares")

        c = CraftedStatistics(withGram)
        let big = 2 * (c.double(c.gramOffset(0, 0)) * c.double(c.gramOffset(2, 2))).squareRoot()
        c.set(c.gramOffset(0, 2), big)
        c.set(c.gramOffset(2, 0), big)
        expectRefused(c, "a Gram entry above the geometric mean of its diagonal")
    }

    @Test("activations near the underflow range still round-trip")
    func tinyActivations() throws {
        var stats = try ActivationStatistics(features: 3, gram: true)
        try stats.accumulate(try Matrix<Double>(rows: 4, cols: 3, values: [1e-170, 1e-160, 3, 2e-170, -1e-160, 4, 1e-170, 0, 5, 0, 1e-161, 6]))
        #expect(try ActivationStatistics(serialized: stats.serialized()) == stats)
    }
}
