import Foundation
import PruneKit
import Testing

/// X (tokens x cols) with very different feature scales, and H = X^T X.
private func inputs(tokens: Int, cols: Int, seed: UInt64) -> (x: [Double], h: [Double]) {
    var rng = TestRandom(seed)
    var x = [Double](repeating: 0, count: tokens * cols)
    for t in 0..<tokens { for c in 0..<cols { x[t * cols + c] = Double(rng.normal()) * (3 * pow(0.02, Double(c) / Double(cols))) } }
    for t in 0..<tokens { for c in 1..<cols { x[t * cols + c] += 0.5 * x[t * cols + c - 1] } }
    var h = [Double](repeating: 0, count: cols * cols)
    for t in 0..<tokens { for i in 0..<cols { for j in 0..<cols { h[i * cols + j] += x[t * cols + i] * x[t * cols + j] } } }
    return (x, h)
}

/// ||(W - A B) X^T||^2.
private func weightedError(_ w: Matrix<Double>, _ a: Matrix<Double>, _ b: Matrix<Double>, _ x: [Double], tokens: Int) -> Double {
    var total = 0.0
    for r in 0..<w.rows {
        var diff = [Double](repeating: 0, count: w.cols)
        for c in 0..<w.cols {
            var ab = 0.0
            for q in 0..<a.cols { ab += a[r, q] * b[q, c] }
            diff[c] = w[r, c] - ab
        }
        for t in 0..<tokens {
            var e = 0.0
            for c in 0..<w.cols { e += diff[c] * x[t * w.cols + c] }
            total += e * e
        }
    }
    return total
}

@Suite struct LowRankTests {
    @Test(arguments: [1, 3, 6, 10])
    func errorIsTheSumOfTheDroppedSingularValues(rank: Int) throws {
        let (rows, cols, tokens) = (14, 10, 120)
        let (x, h) = inputs(tokens: tokens, cols: cols, seed: 1)
        var rng = TestRandom(2)
        let w = try Matrix<Double>(rows: rows, cols: cols, values: (0..<(rows * cols)).map { _ in Double(rng.normal()) })
        let (a, b, s) = try lowRank(w, hessian: h, options: .init(rank: rank, dampening: 0))
        #expect(a.rows == rows && a.cols == rank && b.rows == rank && b.cols == cols)
        #expect(zip(s, s.dropFirst()).allSatisfy { $0 >= $1 })
        let dropped = s[rank...].reduce(0) { $0 + $1 * $1 }, all = s.reduce(0) { $0 + $1 * $1 }
        #expect(abs(weightedError(w, a, b, x, tokens: tokens) - dropped) <= 1e-8 * all)
        for i in 0..<rank {  // orthonormal columns, largest entry positive
            var norm = 0.0, largest = 0.0
            for r in 0..<rows { norm += a[r, i] * a[r, i]; if abs(a[r, i]) > abs(largest) { largest = a[r, i] } }
            #expect(abs(norm - 1) < 1e-10 && largest > 0)
        }
    }

    @Test func energyAndErrors() throws {
        let (x, h) = inputs(tokens: 80, cols: 8, seed: 3)
        _ = x
        var rng = TestRandom(4)
        let w = try Matrix<Float>(rows: 6, cols: 8, floats: (0..<48).map { _ in rng.normal() })
        let (a, _, s) = try lowRank(w, hessian: h, options: .init(energy: 0.9))
        let total = s.reduce(0) { $0 + $1 * $1 }
        let kept = s[..<a.cols].reduce(0) { $0 + $1 * $1 }, fewer = s[..<(a.cols - 1)].reduce(0) { $0 + $1 * $1 }
        #expect(kept >= 0.9 * total && fewer < 0.9 * total)
        #expect(throws: PruneKitError.self) { try lowRank(w, hessian: h, options: .init()) }          // neither
        #expect(throws: PruneKitError.self) { try lowRank(w, hessian: h, options: .init(rank: 7)) }   // > min(6, 8)
        #expect(throws: PruneKitError.self) { try lowRank(w, hessian: h, options: .init(rank: 2, energy: 0.5)) }
        let singular = [Double](repeating: 1, count: 64)  // rank 1 (inputs that never fire would get 1 on the diagonal)
        do {
            _ = try lowRank(w, hessian: singular, options: .init(rank: 2, dampening: 0, maxDampeningRetries: 0))
            Issue.record("a singular hessian without dampening was accepted")
        } catch { #expect(error.status == .numeric) }
    }
}

@Suite struct GatingTests {
    @Test func topChannelsMatchASortedReference() throws {
        var rng = TestRandom(5)
        let (rows, cols, k) = (9, 37, 12)
        let values = (0..<(rows * cols)).map { _ in Float(Int(rng.uniform() * 9) - 4) }  // ties
        let scores = try Matrix<Float>(rows: rows, cols: cols, values: values)
        for magnitude in [false, true] {
            let got = try topChannels(scores, k: k, magnitude: magnitude)
            for t in 0..<rows {
                let s = (0..<cols).map { magnitude ? abs(values[t * cols + $0]) : values[t * cols + $0] + 0 }
                let order = (0..<cols).sorted { (s[$0], $0) < (s[$1], $1) }
                #expect(Array(got[(t * k)..<((t + 1) * k)]) == order[(cols - k)...].sorted().map(Int64.init))
            }
        }
        #expect(throws: PruneKitError.self) { try topChannels(scores, k: 0) }
    }

    @Test func gatherAndRandomMasks() throws {
        let m = try Matrix<Double>(rows: 3, cols: 4, values: (0..<12).map(Double.init))
        #expect(try gather(m, axis: .cols, indices: [3, 0, 3]).values == [3, 0, 3, 7, 4, 7, 11, 8, 11])
        #expect(try gather(m, axis: .rows, indices: [2]).values == [8, 9, 10, 11])
        #expect(throws: PruneKitError.self) { try gather(m, axis: .rows, indices: [3]) }
        let importance = (0..<4000).map { Float($0 % 10) / 10 }
        let mask = try randomChannelMask(importance: importance, threshold: 0.5, dropProbability: 0.25, seed: 42)
        let again = try randomChannelMask(importance: importance, threshold: 0.5, dropProbability: 0.25, seed: 42)
        #expect(mask == again)
        for c in 0..<4000 {
            let expected = importance[c] >= 0.5 || Double(randomScore(seed: 42, position: UInt64(c))) >= 0.25
            #expect(mask[c] == expected)
        }
        let dropped = mask.filter { !$0 }.count  // 2000 candidates at p = 0.25: 500 +- 5 sigma (97)
        #expect(abs(dropped - 500) < 97)
    }
}
