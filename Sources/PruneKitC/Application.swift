// The application functions of prunekit.h.
import CPruneKit
import PruneKit

/// Implements `pk_status pk_apply_mask(const pk_matrix *weights, const uint8_t *mask)`.
@c @implementation
public func pk_apply_mask(_ weights: UnsafePointer<pk_matrix>?, _ mask: UnsafePointer<UInt8>?) -> pk_status {
    run("pk_apply_mask") { () throws(PruneKitError) in
        let view = try matrixView(weights, "weights")
        guard let mask else { throw nullPointer("mask") }
        try applyMask(mask, to: view)
    }
}

/// Implements `pk_status pk_mask_sparsity(const uint8_t *mask, int64_t rows, int64_t cols,
/// double *row_sparsity_out, double *overall_out)`.
@c @implementation
public func pk_mask_sparsity(_ mask: UnsafePointer<UInt8>?, _ rows: Int64, _ cols: Int64,
                             _ rowSparsityOut: UnsafeMutablePointer<Double>?,
                             _ overallOut: UnsafeMutablePointer<Double>?) -> pk_status {
    run("pk_mask_sparsity") { () throws(PruneKitError) in
        guard let mask else { throw nullPointer("mask") }
        // maskSparsity checks the shape and every byte before it writes a per-row figure.
        let overall = try maskSparsity(mask, rows: Int(rows), cols: Int(cols), rowSparsity: rowSparsityOut)
        overallOut?.pointee = overall
    }
}
