import Foundation
import PruneKit
import Testing

/// One case of Tests/vectors/structures/cases.txt (see structures_reference.py).
struct StructureCase: CustomStringConvertible, Sendable {
    var name: String
    var options: StructureOptions
    var groups: [StructureGroup]
    var keep: [UInt8]
    var scores: [Double]
    var description: String { name }

    static let folder = VectorCase.folder.appendingPathComponent("structures")

    static func loadAll() throws -> [StructureCase] {
        let text = try String(contentsOf: folder.appendingPathComponent("cases.txt"), encoding: .utf8)
        return try text.split(separator: "\n").map { try StructureCase(line: String($0)) }
    }

    init(line: String) throws {
        let tokens = line.split(separator: " ").map { $0.split(separator: "=", maxSplits: 1).map(String.init) }
        var head: [String: String] = [:]
        for t in tokens.prefix(9) { head[t[0]] = t[1] }
        name = head["name"]!
        options = StructureOptions(
            criterion: StructureCriterion(rawValue: Int32(head["criterion"]!)!)!,
            reduction: StructureReduction(rawValue: Int32(head["reduction"]!)!)!,
            normalization: StructureNormalization(rawValue: Int32(head["normalization"]!)!)!,
            mode: StructureMode(rawValue: Int32(head["mode"]!)!)!, ratio: Double(head["ratio"]!)!,
            stageValues: head["stages"] == "-" ? nil : head["stages"]!.split(separator: ",").map { Double($0)! },
            multiple: Int(head["multiple"]!)!)
        groups = []
        var g = -1, m = 0
        for t in tokens.dropFirst(9) {
            let v = t[1].split(separator: ",").map { Int($0)! }
            if t[0] == "group" {
                groups.append(StructureGroup([], minKeep: v[0], stage: v[1]))
                g += 1
                m = 0
            } else {
                let data = try Data(contentsOf: StructureCase.folder.appendingPathComponent("\(name).g\(g).m\(m).bin"))
                let values = data.withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
                let axis: StructureAxis = v[2] == 0 ? .rows(span: v[3]) : v[2] == 1 ? .cols(span: v[3]) : .blocks(rows: v[3], cols: v[4])
                groups[g].members.append(StructureMember(try Matrix<Float>(rows: v[0], cols: v[1], values: values),
                                                         axis: axis, scored: v[5] == 1))
                m += 1
            }
        }
        keep = [UInt8](try Data(contentsOf: StructureCase.folder.appendingPathComponent("\(name).keep.bin")))
        scores = try Data(contentsOf: StructureCase.folder.appendingPathComponent("\(name).scores.bin"))
            .withUnsafeBytes { Array($0.bindMemory(to: Double.self)) }
    }
}

@Suite struct StructureTests {
    @Test func goldenSelectionsAtAnyThreadCount() throws {
        let cases = try StructureCase.loadAll()
        #expect(cases.count >= 25)
        for c in cases {
            for threads in [1, 3] {
                var options = c.options
                options.threads = threads
                let (keep, scores) = try selectStructures(c.groups, options: options)
                #expect(keep.joined().map { UInt8($0 ? 1 : 0) } == c.keep, "\(c.name) threads \(threads)")
                #expect(Array(scores.joined()) == c.scores, "\(c.name) threads \(threads)")
            }
        }
    }

    @Test func layoutCountsShapesAndMasks() throws {
        let rows = try StructureLayout(axis: .rows(span: 2), rows: 6, cols: 5)
        #expect(try rows.count == 3 && rows.compactedShape(kept: 2) == (4, 5))
        let cols = try StructureLayout(axis: .cols(span: 3), rows: 2, cols: 9)
        #expect(try cols.count == 3 && cols.compactedShape(kept: 1) == (2, 3))
        let blocks = try StructureLayout(axis: .blocks(rows: 4, cols: 3), rows: 6, cols: 4)
        #expect(blocks.count == 4)
        #expect(throws: PruneKitError.self) { try blocks.compactedShape(kept: 1) }
        #expect(throws: PruneKitError.self) { try rows.compactedShape(kept: 4) }
        #expect(throws: PruneKitError.self) { try StructureLayout(axis: .rows(span: 4), rows: 6, cols: 5) }
        #expect(throws: PruneKitError.self) { try StructureLayout(axis: .cols(span: 0), rows: 6, cols: 5) }
        // The mask of a selection keeps exactly the entries of the kept structures.
        let keep = [true, false, false, true]
        let mask = try structureMask(rows: 6, cols: 4, axis: .blocks(rows: 4, cols: 3), keep: keep)
        for r in 0..<6 { for c in 0..<4 { #expect(mask[r, c] == keep[(r / 4) * 2 + c / 3]) } }
    }

    @Test func mlpCompactionEqualsMasking() throws {
        var rng = SystemRandomNumberGenerator()
        let (d, hidden, out) = (6, 10, 3)
        let w1 = try Matrix<Float>(rows: hidden, cols: d, floats: (0..<(hidden * d)).map { _ in Float.random(in: -1...1, using: &rng) })
        let w2 = try Matrix<Float>(rows: out, cols: hidden, floats: (0..<(out * hidden)).map { _ in Float.random(in: -1...1, using: &rng) })
        let x = (0..<d).map { _ in Float.random(in: -1...1, using: &rng) }
        let group = StructureGroup([StructureMember(w1, axis: .rows(span: 1)), StructureMember(w2, axis: .cols(span: 1))])
        let (keep, _) = try selectStructures([group], options: .init(ratio: 0.4))
        #expect(keep[0].filter { $0 }.count == 6)
        let a = try compacted(w1, axis: .rows(span: 1), keep: keep[0])
        let b = try compacted(w2, axis: .cols(span: 1), keep: keep[0])
        #expect(a.rows == 6 && b.cols == 6)
        func forward(_ w1: Matrix<Float>, _ w2: Matrix<Float>, mask: [Bool]?) -> [Float] {
            let h = (0..<w1.rows).map { i in max(0, (0..<d).reduce(Float(0)) { $0 + w1[i, $1] * x[$1] }) * (mask.map { $0[i] ? 1 : 0 } ?? 1) }
            return (0..<out).map { o in (0..<w2.cols).reduce(Float(0)) { $0 + w2[o, $1] * h[$1] } }
        }
        let masked = forward(w1, w2, mask: keep[0]), small = forward(a, b, mask: nil)
        for o in 0..<out { #expect(abs(masked[o] - small[o]) <= 1e-5) }
        let blocks = try structureMask(rows: 4, cols: 6, axis: .blocks(rows: 2, cols: 4), keep: [true, false, false, true])
        #expect(blocks.values == [1, 1, 1, 1, 0, 0, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 1, 1, 0, 0, 0, 0, 1, 1])
    }

    @Test func badInputThrows() throws {
        let w = try Matrix<Float>(rows: 4, cols: 3, floats: Array(repeating: 1, count: 12))
        let other = try Matrix<Float>(rows: 2, cols: 5, floats: Array(repeating: 1, count: 10))
        #expect(throws: PruneKitError.self) {
            try selectStructures([StructureGroup([StructureMember(w, axis: .rows(span: 1)), StructureMember(other, axis: .cols(span: 1))])])
        }
        do {
            _ = try selectStructures([StructureGroup([StructureMember(w, axis: .rows(span: 1))], minKeep: 3)])
            Issue.record("an impossible minimum was accepted")
        } catch {
            #expect(error.status == .invalidArgument && error.message.contains("impossible"))
        }
        #expect(throws: PruneKitError.self) { try compacted(w, axis: .rows(span: 1), keep: [false, false, false, false]) }
        #expect(throws: PruneKitError.self) { try compacted(w, axis: .rows(span: 3), keep: [true]) }
        // The enum raw values agree with the header.
        #expect(StructureCriterion.nonzeroFraction.rawValue == 3 && StructureMode.threshold.rawValue == 3)
        #expect(StructureNormalization.standard.rawValue == 4 && StructureReduction.max.rawValue == 2)
    }
}
