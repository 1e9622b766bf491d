import Foundation
import PruneKit
import Testing

/// Tests/vectors/udfc (Tests/vectors/generate_udfc.py, from the numpy reference): producer
/// [6, 2, 2, 2], the batch norm, next [3, 6, 2, 2] (span 4), keep 1 0 1 1 0 1.
private func udfcVector(_ name: String) throws -> [Double] {
    let url = VectorCase.folder.appendingPathComponent("udfc").appendingPathComponent("\(name).bin")
    return try Data(contentsOf: url).withUnsafeBytes { Array($0.bindMemory(to: Double.self)) }
}

private let udfcKeep = [true, false, true, true, false, true]

private func chain() throws -> (producer: Matrix<Double>, bn: [Matrix<Double>], next: Matrix<Double>) {
    let bn = try ["gamma", "beta", "mean", "var"].map { try Matrix<Double>(rows: 1, cols: 6, values: udfcVector($0)) }
    return (try Matrix(rows: 6, cols: 8, values: udfcVector("conv")), bn, try Matrix(rows: 3, cols: 24, values: udfcVector("next")))
}

@Suite struct DataFreeTests {
    @Test(arguments: [(DataFreeActivation.relu, 0.01, "relu"), (.identity, 0.05, "identity")])
    func matchesTheNumpyClosedForm(activation: DataFreeActivation, dampening: Double, name: String) throws {
        let (producer, bn, next) = try chain()
        let result = try compactedDataFree(producer: producer, gamma: bn[0], beta: bn[1], mean: bn[2], variance: bn[3],
                                           next: next, nextSpan: 4, keep: udfcKeep, dampening: dampening, activation: activation)
        let expected = try udfcVector("\(name)_next"), shift = try udfcVector("\(name)_shift")
        #expect(result.next.rows == 3 && result.next.cols == 16)
        for (a, b) in zip(result.next.values, expected) { #expect(abs(a - b) <= 1e-12 * (1 + abs(b))) }
        for (a, b) in zip(result.biasShift, shift) { #expect(abs(a - b) <= 1e-12 * (1 + abs(b))) }
        // The other members are compacted unchanged: rows 0, 2, 3, 5 of the producer.
        var rows: [Double] = []
        for r in [0, 2, 3, 5] { rows += producer.values[(r * 8)..<(r * 8 + 8)] }
        #expect(result.producer.values == rows)
        let variances: [Double] = [0, 2, 3, 5].map { bn[3].values[$0] }
        #expect(result.batchNorm[3].values == variances)
    }

    @Test func float32MatchesFloat64ToRounding() throws {
        let (producer, bn, next) = try chain()
        func single(_ m: Matrix<Double>) throws -> Matrix<Float> { try Matrix(rows: m.rows, cols: m.cols, values: m.values.map { Float($0) }) }
        let result = try compactedDataFree(producer: single(producer), gamma: single(bn[0]), beta: single(bn[1]), mean: single(bn[2]),
                                           variance: single(bn[3]), next: single(next), nextSpan: 4, keep: udfcKeep)
        let expected = try udfcVector("relu_next")
        for (a, b) in zip(result.next.values, expected) { #expect(abs(Double(a) - b) <= 1e-5 * (1 + abs(b))) }
    }

    @Test func badInputThrowsClearErrors() throws {
        let (producer, bn, next) = try chain()
        func attempt(_ bn: [Matrix<Double>], keep: [Bool] = udfcKeep, epsilon: Double = 1e-5, next n: Matrix<Double>? = nil) -> PruneKitError? {
            do {
                _ = try compactedDataFree(producer: producer, gamma: bn[0], beta: bn[1], mean: bn[2], variance: bn[3],
                                          next: n ?? next, nextSpan: 4, keep: keep, epsilon: epsilon)
                return nil
            } catch { return error }
        }
        var negative = bn
        negative[3].values[2] = -1
        #expect(attempt(negative)?.status == .invalidArgument)
        #expect(attempt(negative)?.message.contains("negative") == true)
        var nan = bn
        nan[0].values[1] = .nan
        #expect(attempt(nan)?.status == .nonFinite)
        #expect(attempt(bn, keep: Array(repeating: false, count: 6))?.status == .invalidArgument)
        var short = bn
        short[1] = try Matrix(rows: 1, cols: 5, values: Array(bn[1].values.prefix(5)))
        #expect(attempt(short)?.status == .invalidShape)
        var zeroVariance = bn
        zeroVariance[3].values[0] = 0
        #expect(attempt(zeroVariance, epsilon: 0)?.status == .invalidArgument)
        var infinite = next
        infinite.values[7] = .infinity
        #expect(attempt(bn, next: infinite)?.status == .nonFinite)
    }

    @Test func coefficientsOfTheOwnedAPI() throws {
        // Two channels with identical filters and batch norms: pruning one, the other carries it
        // whole (s = 1 / (1 + dampening) with nothing else correlated, t from the means).
        let producer = try Matrix<Double>(rows: 3, cols: 4, values: [1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 1])
        let row = { (v: [Double]) throws(PruneKitError) in try Matrix<Double>(rows: 1, cols: 3, values: v) }
        let (gamma, beta, mean, variance) = (try row([1, 1, 1]), try row([0.5, 0.5, -0.2]), try row([0, 0, 0]), try row([1, 1, 1]))
        let group = StructureGroup([StructureMember(producer, axis: .rows(span: 1))]
                                   + [gamma, beta, mean, variance, variance].map { StructureMember($0, axis: .cols(span: 1)) })
        let options = DataFreeCompensation(producer: 0, next: 5, batchNormWeight: 1, batchNormBias: 2, batchNormMean: 3,
                                           batchNormVariance: 4, epsilon: 0, dampening: 0, activation: .identity)
        let s = try dataFreeCoefficients(group, keep: [true, false, true], options: options)
        #expect(throws: PruneKitError.self) { try dataFreeCoefficients(group, keep: [true, false], options: options) }
        #expect(s.kept == [0, 2] && s.pruned == [1])
        #expect(abs(s.scales[0] - 1) < 1e-12 && abs(s.scales[1]) < 1e-12)
        #expect(abs(s.shifts[0]) < 1e-12)
    }
}
