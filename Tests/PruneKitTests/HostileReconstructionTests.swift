import PruneKit
import Testing

@Suite("Reconstruction under hostile input")
struct HostileReconstructionTests {
    /// A layer and its Gram matrix, with input `dead` never firing.
    func layer(rows: Int = 8, cols: Int = 32, dead: Int? = nil) throws -> (w: Matrix<Double>, h: [Double]) {
        var rng = TestRandom(77)
        var x = (0..<(96 * cols)).map { i in Double(rng.normal()) * Double(1 + i % 5) }
        if let dead { for t in 0..<96 { x[t * cols + dead] = 0 } }
        var stats = try ActivationStatistics(features: cols, gram: true)
        try stats.accumulate(try Matrix<Double>(rows: 96, cols: cols, values: x))
        return (try Matrix<Double>(rows: rows, cols: cols, values: (0..<(rows * cols)).map { _ in Double(rng.normal()) }), try stats.gram())
    }

    func largestRelativeDifference(_ a: Matrix<Double>, _ b: Matrix<Double>) -> Double {
        let scale = a.values.map(abs).max()!
        return zip(a.values, b.values).map { abs($0 - $1) }.max()! / scale
    }

    @Test("SparseGPT gives the same result for any scale of the Hessian, float32 and float64",
          arguments: [Precision.float32, .float64])
    func scaleInvariance(_ precision: Precision) throws {
        let (w, h) = try layer()
        let options = ReconstructionOptions(pattern: .unstructured(sparsity: 0.5), blockSize: 16, precision: precision)
        let (mask, reference) = try sparseGPT(w, hessian: h, options: options)
        // Powers of two: the same bits (float32 used to underflow below about 1e-36 and overflow
        // at 1e40; float64 Hessians in the subnormal range lost the mask).
        let powers: [Double] = precision == .float32 ? [0x1p-140, 0x1p-3, 0x1p7, 0x1p133] : [0x1p-1000, 0x1p-3, 0x1p900]
        for c in powers {
            let (m, out) = try sparseGPT(w, hessian: h.map { $0 * c }, options: options)
            #expect(m == mask, "scale \(c)")
            #expect(out.values == reference.values, "scale \(c)")
        }
        if precision == .float64 {
            // Subnormal entries (about 2^-1030): the Hessian itself has lost bits.
            let (m, out) = try sparseGPT(w, hessian: h.map { $0 * 0x1p-1040 }, options: options)
            #expect(m == mask)
            #expect(largestRelativeDifference(out, reference) <= 1e-9)
        }
        // Other multiples: the same mask, weights to round-off.
        for c in [3.0, 1e-30, 7e25] {
            let (m, out) = try sparseGPT(w, hessian: h.map { $0 * c }, options: options)
            #expect(m == mask, "scale \(c)")
            #expect(largestRelativeDifference(out, reference) <= (precision == .float32 ? 1e-5 : 1e-12), "scale \(c)")
        }
    }

    @Test("dead inputs do not make the result depend on the scale; prune_columns neither")
    func deadInputsAndColumns() throws {
        let (w, h) = try layer(dead: 5)
        let options = ReconstructionOptions(pattern: .nm(n: 2, m: 4), blockSize: 16, precision: .float64)
        let (mask, reference) = try sparseGPT(w, hessian: h, options: options)
        #expect((0..<w.rows).allSatisfy { reference[$0, 5] == 0 })
        let (m, out) = try sparseGPT(w, hessian: h.map { $0 * 3 }, options: options)
        #expect(m == mask)
        #expect(largestRelativeDifference(out, reference) <= 1e-12)
        let keep = (0..<w.cols).map { $0 % 3 != 1 }
        let columns = try pruneColumns(w, hessian: h, keep: keep, options: options)
        for c in [1e-300, 0x1p-1040, 1e40] {
            let scaled = try pruneColumns(w, hessian: h.map { $0 * c }, keep: keep, options: options)
            #expect(largestRelativeDifference(scaled, columns) <= 1e-9, "scale \(c)")
        }
    }

    @Test("an indefinite Hessian with a positive diagonal: the retries make it positive definite, as documented")
    func indefiniteHessian() throws {
        // Unit diagonal, every off-diagonal entry -0.6: eigenvalues -0.2, 1.6, 1.6. The
        // dampening (1% of the mean diagonal, then 10x per retry) first succeeds at 100%.
        let h: [Double] = [1, -0.6, -0.6, -0.6, 1, -0.6, -0.6, -0.6, 1]
        let w = try Matrix<Double>(rows: 2, cols: 3, values: [0.5, -1, 2, 1.5, 0.25, -0.75])
        let base = ReconstructionOptions(pattern: .unstructured(sparsity: 0.5), precision: .float64)
        let (mask, out) = try sparseGPT(w, hessian: h, options: base)
        var fixed = base
        fixed.dampening = 1
        fixed.maxDampeningRetries = 0
        let (fixedMask, fixedOut) = try sparseGPT(w, hessian: h, options: fixed)
        #expect(mask == fixedMask)
        #expect(largestRelativeDifference(out, fixedOut) <= 1e-15)
        // Fewer retries than it needs: refused.
        var strict = base
        strict.maxDampeningRetries = 1
        do {
            _ = try sparseGPT(w, hessian: h, options: strict)
            Issue.record("an indefinite Hessian was accepted with one retry")
        } catch {
            #expect(error.status == .numeric)
        }
    }
}
