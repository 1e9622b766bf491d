import Foundation
import PruneKit
import Testing

/// A case of Tests/vectors/admm.txt (written by generate_admm.py from the numpy reference).
struct ADMMCase: CustomStringConvertible, Sendable {
    var fields: [String: String]
    var description: String { fields["name"]! }

    static func loadAll() -> [ADMMCase] { VectorCase.manifest("admm.txt").map { ADMMCase(fields: $0) } }

    func bytes(_ suffix: String) -> [UInt8] {
        let path = VectorCase.folder.appendingPathComponent("admm_\(fields["name"]!)\(suffix)").path
        return [UInt8](try! Data(contentsOf: URL(fileURLWithPath: path)))
    }

    func doubles(_ suffix: String) -> [Double] { bytes(suffix).withUnsafeBytes { Array($0.bindMemory(to: Double.self)) } }
    func int(_ key: String) -> Int { Int(fields[key]!)! }
    func double(_ key: String) -> Double { Double(fields[key]!)! }

    var options: ADMMOptions {
        let pattern: ADMMOptions.Pattern
        switch fields["scope"]! {
        case "nm": pattern = .nm(n: int("n"), m: int("m"))
        case "row": pattern = .row(sparsity: double("sparsity"))
        default: pattern = .layer(sparsity: double("sparsity"))
        }
        return ADMMOptions(pattern: pattern, iterations: int("iterations"), rampIterations: int("ramp"), rho: double("rho"),
                           rhoGrowth: double("rho_growth"), rhoInterval: int("rho_interval"),
                           refineIterations: int("refine"), dampening: double("dampening"), precision: .float64)
    }
}

@Suite("ADMM against the float64 numpy reference")
struct ADMMTests {
    @Test("golden vectors, 1 and 3 threads", arguments: ADMMCase.loadAll())
    func golden(_ c: ADMMCase) throws {
        let rows = c.int("rows"), cols = c.int("cols")
        let w = try Matrix<Double>(rows: rows, cols: cols, values: c.doubles(".w.bin"))
        let h = c.doubles(".h.bin"), expected = c.doubles(".out.bin"), expectedMask = c.bytes(".mask.bin")
        let scale = expected.map(abs).max()!
        for threads in [1, 3] {
            var options = c.options
            options.threads = threads
            let (mask, out) = try admm(w, hessian: h, options: options)
            #expect(mask.values == expectedMask)
            let worst = zip(out.values, expected).map { abs($0 - $1) }.max()!
            #expect(worst <= 1e-6 * scale)
        }
    }

    @Test("the ramp reaches the target sparsity on its last iteration")
    func ramp() {
        let options = ADMMOptions(pattern: .layer(sparsity: 0.6), iterations: 10, rampIterations: 4)
        #expect(options.rampSparsity(iteration: 3) == 0.6)
        #expect(options.rampSparsity(iteration: 0) == 0.6 - 0.6 * 0.75 * 0.75 * 0.75)
    }

    @Test("bad options throw before anything is written")
    func badOptions() throws {
        let w = try Matrix<Float>(rows: 2, cols: 4, values: [1, 2, 3, 4, 5, 6, 7, 8])
        var h = [Double](repeating: 0, count: 16)
        for i in 0..<4 { h[i * 5] = 1 }
        #expect(throws: PruneKitError.self) { try admm(w, hessian: h, options: .init(iterations: 3, rampIterations: 4)) }
        #expect(throws: PruneKitError.self) { try admm(w, hessian: h, options: .init(rho: 0)) }
        #expect(throws: PruneKitError.self) { try admm(w, hessian: h, options: .init(pattern: .nm(n: 2, m: 3))) }
        #expect(throws: PruneKitError.self) { try admm(w, hessian: [Double](repeating: 1, count: 9)) }
        let (mask, out) = try admm(w, hessian: h, options: .init(pattern: .layer(sparsity: 0.5)))
        #expect(mask.values == [0, 0, 0, 0, 1, 1, 1, 1])
        // An identity Hessian: the kept weights stay (to float32 round-off), the pruned are zero.
        #expect(zip(out.values[4...], [5, 6, 7, 8] as [Float]).allSatisfy { abs($0 - $1) <= 1e-5 * $1 })
        #expect(out.values[..<4].allSatisfy { $0 == 0 })
    }
}
