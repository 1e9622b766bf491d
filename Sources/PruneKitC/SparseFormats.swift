// The sparse-format functions of prunekit.h.
import CPruneKit
import PruneKit

/// Implements `pk_status pk_count_nonzero(const pk_matrix *weights, int64_t *nnz_out)`.
@c @implementation
public func pk_count_nonzero(_ weights: UnsafePointer<pk_matrix>?, _ nnzOut: UnsafeMutablePointer<Int64>?) -> pk_status {
    run("pk_count_nonzero") { () throws(PruneKitError) in
        let view = try matrixView(weights, "weights")
        guard let nnzOut else { throw nullPointer("nnz_out") }
        nnzOut.pointee = Int64(try SparseFormats.countNonZero(view))
    }
}

/// Implements `pk_status pk_export_24(const pk_matrix *, void *values_out, uint8_t *metadata_out)`.
@c @implementation
public func pk_export_24(_ weights: UnsafePointer<pk_matrix>?, _ valuesOut: UnsafeMutableRawPointer?,
                         _ metadataOut: UnsafeMutablePointer<UInt8>?) -> pk_status {
    run("pk_export_24") { () throws(PruneKitError) in
        let view = try matrixView(weights, "weights")
        guard let valuesOut else { throw nullPointer("values_out") }
        guard let metadataOut else { throw nullPointer("metadata_out") }
        try SparseFormats.export24(view, values: valuesOut, metadata: metadataOut)
    }
}

/// Implements `pk_status pk_import_24(const void *values, const uint8_t *metadata, const pk_matrix *dense_out)`.
@c @implementation
public func pk_import_24(_ values: UnsafeRawPointer?, _ metadata: UnsafePointer<UInt8>?,
                         _ denseOut: UnsafePointer<pk_matrix>?) -> pk_status {
    run("pk_import_24") { () throws(PruneKitError) in
        guard let values else { throw nullPointer("values") }
        guard let metadata else { throw nullPointer("metadata") }
        try SparseFormats.import24(values: values, metadata: metadata, into: try matrixView(denseOut, "dense_out"))
    }
}

/// Implements `pk_status pk_export_csr(const pk_matrix *, int64_t capacity, int64_t *row_offsets_out,
/// int64_t *columns_out, void *values_out)`.
@c @implementation
public func pk_export_csr(_ weights: UnsafePointer<pk_matrix>?, _ capacity: Int64, _ rowOffsetsOut: UnsafeMutablePointer<Int64>?,
                          _ columnsOut: UnsafeMutablePointer<Int64>?, _ valuesOut: UnsafeMutableRawPointer?) -> pk_status {
    run("pk_export_csr") { () throws(PruneKitError) in
        let view = try matrixView(weights, "weights")
        guard let rowOffsetsOut else { throw nullPointer("row_offsets_out") }
        guard let columnsOut else { throw nullPointer("columns_out") }
        guard let valuesOut else { throw nullPointer("values_out") }
        try SparseFormats.exportCSR(view, capacity: Int(capacity), rowOffsets: rowOffsetsOut, columns: columnsOut, values: valuesOut)
    }
}

/// Implements `pk_status pk_import_csr(const int64_t *, const int64_t *, const void *, const pk_matrix *dense_out)`.
@c @implementation
public func pk_import_csr(_ rowOffsets: UnsafePointer<Int64>?, _ columns: UnsafePointer<Int64>?, _ values: UnsafeRawPointer?,
                          _ denseOut: UnsafePointer<pk_matrix>?) -> pk_status {
    run("pk_import_csr") { () throws(PruneKitError) in
        guard let rowOffsets else { throw nullPointer("row_offsets") }
        guard let columns else { throw nullPointer("columns") }
        guard let values else { throw nullPointer("values") }
        try SparseFormats.importCSR(rowOffsets: rowOffsets, columns: columns, values: values, into: try matrixView(denseOut, "dense_out"))
    }
}

/// Implements `pk_status pk_export_bitmask(const pk_matrix *, int64_t capacity, uint8_t *bits_out, void *values_out)`.
@c @implementation
public func pk_export_bitmask(_ weights: UnsafePointer<pk_matrix>?, _ capacity: Int64, _ bitsOut: UnsafeMutablePointer<UInt8>?,
                              _ valuesOut: UnsafeMutableRawPointer?) -> pk_status {
    run("pk_export_bitmask") { () throws(PruneKitError) in
        let view = try matrixView(weights, "weights")
        guard let bitsOut else { throw nullPointer("bits_out") }
        guard let valuesOut else { throw nullPointer("values_out") }
        try SparseFormats.exportBitmask(view, capacity: Int(capacity), bits: bitsOut, values: valuesOut)
    }
}

/// Implements `pk_status pk_import_bitmask(const uint8_t *bits, const void *values, const pk_matrix *dense_out)`.
@c @implementation
public func pk_import_bitmask(_ bits: UnsafePointer<UInt8>?, _ values: UnsafeRawPointer?, _ denseOut: UnsafePointer<pk_matrix>?) -> pk_status {
    run("pk_import_bitmask") { () throws(PruneKitError) in
        guard let bits else { throw nullPointer("bits") }
        guard let values else { throw nullPointer("values") }
        try SparseFormats.importBitmask(bits: bits, values: values, into: try matrixView(denseOut, "dense_out"))
    }
}
