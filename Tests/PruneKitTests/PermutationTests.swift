import Foundation
import PruneKit
import Testing

/// A case of Tests/vectors/permutation.txt (generate_permutation.py, from the numpy reference).
struct PermutationCase: CustomStringConvertible, Sendable {
    var fields: [String: String]
    var description: String { fields["name"]! }

    static func loadAll() -> [PermutationCase] { VectorCase.manifest("permutation.txt").map { PermutationCase(fields: $0) } }

    func bytes(_ suffix: String) -> [UInt8] {
        let path = VectorCase.folder.appendingPathComponent("\(fields["name"]!)\(suffix)").path
        return [UInt8](try! Data(contentsOf: URL(fileURLWithPath: path)))
    }

    func int(_ key: String) -> Int { Int(fields[key]!)! }
    func double(_ key: String) -> Double { Double(fields[key]!)! }
}

@Suite("Channel permutations")
struct PermutationTests {
    @Test("the search gives the numpy reference's permutation", arguments: PermutationCase.loadAll())
    func golden(_ c: PermutationCase) throws {
        let w: [Float] = c.bytes(".w.bin").withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
        let f: [Float] = c.bytes(".f.bin").withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
        let expected: [Int64] = c.bytes(".perm.bin").withUnsafeBytes { Array($0.bindMemory(to: Int64.self)) }
        let matrix = try Matrix<Float>(rows: c.int("rows"), cols: c.int("cols"), values: w)
        for threads in [1, 3] {
            let found = try channelPermutation(
                for: matrix, criterion: .wanda(featureNorms: f),
                options: PermutationOptions(n: c.int("n"), m: c.int("m"), segment: c.int("segment"),
                                            maxSwaps: c.int("max_swaps"), threads: threads))
            #expect(found.permutation.map { Int64($0) } == expected)
            #expect(abs(found.keptBefore - c.double("before")) <= 1e-12 * c.double("before"))
            #expect(abs(found.keptAfter - c.double("after")) <= 1e-12 * c.double("after"))
        }
    }

    @Test("a budget of zero and bad sizes are errors")
    func badInput() throws {
        let matrix = try Matrix<Float>(rows: 2, cols: 8, values: (0..<16).map { Float($0) })
        #expect(throws: PruneKitError.self) { try channelPermutation(for: matrix, options: .init(maxSwaps: 0)) }
        #expect(throws: PruneKitError.self) { try channelPermutation(for: matrix, options: .init(segment: 6)) }
        #expect(throws: PruneKitError.self) { try channelPermutation(for: matrix, options: .init(n: 2, m: 3)) }
        #expect(throws: PruneKitError.self) { try channelPermutation(for: matrix, options: .init(timeLimit: -1)) }
    }

    @Test("permuting rows and columns together keeps the product")
    func permutedKeepsTheProduct() throws {
        let up = try Matrix<Double>(rows: 4, cols: 3, values: (0..<12).map { Double($0) * 0.5 - 2 })
        let down = try Matrix<Double>(rows: 2, cols: 4, values: (0..<8).map { Double($0) - 3 })
        let p = [2, 0, 3, 1]
        let up2 = try permuted(up, axis: .rows(span: 1), permutation: p)
        let down2 = try permuted(down, axis: .cols(span: 1), permutation: p)
        func product(_ a: Matrix<Double>, _ b: Matrix<Double>) -> [Double] {
            (0..<2).flatMap { i in (0..<3).map { j in (0..<4).reduce(0.0) { $0 + b.values[i * 4 + $1] * a.values[$1 * 3 + j] } } }
        }
        #expect(product(up2, down2) == product(up, down))
        #expect(up2.values[0..<3] == up.values[6..<9])
        #expect(throws: PruneKitError.self) { try permuted(up, axis: .rows(span: 1), permutation: [0, 0, 1, 2]) }
    }
}
