/* libFuzzer target: pk_import_24, pk_import_csr and pk_import_bitmask on caller-described
 * buffers. The first bytes choose the importer, the shape (up to 64 x 64), the output's dtype and
 * row stride; the rest fill the structure. Every input buffer is allocated with exactly the size
 * the header says the importer reads (so an over-read is an AddressSanitizer report), and the
 * output is checked to be untouched on failure. */
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fuzz_bytes b = {data, size, 0};
    int format = fuzz_u8(&b) % 3;
    int64_t rows = 1 + fuzz_u8(&b) % 64, cols = 1 + fuzz_u8(&b) % 64;
    if (format == 0 && fuzz_u8(&b) & 1) cols = 4 * (1 + cols % 16); /* mostly a multiple of 4 for 2:4 */
    int32_t dtype = (int32_t)(fuzz_u8(&b) % 5);                     /* 4: not a dtype */
    int64_t stride = cols + fuzz_u8(&b) % 3;
    int32_t in_dtype = dtype > 3 ? PK_DTYPE_FLOAT32 : dtype;
    size_t element = fuzz_dtype_size(in_dtype);
    size_t out_bytes = (size_t)((rows - 1) * stride + cols) * element;
    uint8_t *dense = (uint8_t *)malloc(out_bytes), *pristine = (uint8_t *)malloc(out_bytes);
    for (size_t i = 0; i < out_bytes; i++) dense[i] = pristine[i] = (uint8_t)(0xA5 ^ i);
    pk_matrix out = {dense, rows, cols, stride, dtype, 0};
    void *values = NULL, *structure = NULL, *columns = NULL;
    pk_status status;
    if (format == 0) {
        int64_t groups = cols / 4;
        structure = fuzz_take(&b, (size_t)(rows * ((cols + 7) / 8)));
        values = fuzz_take(&b, (size_t)(rows * groups * 2) * element);
        status = pk_import_24(values, (const uint8_t *)structure, &out);
    } else if (format == 1) {
        int64_t *offsets = (int64_t *)malloc((size_t)(rows + 1) * sizeof(int64_t));
        /* Offsets as small steps (mostly valid), or raw 64-bit values. */
        int raw = fuzz_u8(&b) % 8 == 0;
        int64_t at = 0;
        for (int64_t r = 0; r <= rows; r++) {
            if (raw) offsets[r] = (int64_t)fuzz_u64(&b, 8);
            else offsets[r] = r == 0 ? (int64_t)(fuzz_u8(&b) % 4 == 0) : (at += (int64_t)(fuzz_u8(&b) % (cols + 2)) - 1);
        }
        structure = offsets;
        int64_t nnz = offsets[rows];
        if (nnz < 0 || nnz > 64 * 66) nnz = -1; /* the header: columns and values hold offsets[rows] entries */
        if (nnz >= 0) {
            int64_t *cols_in = (int64_t *)malloc((size_t)(nnz ? nnz : 1) * sizeof(int64_t));
            for (int64_t i = 0; i < nnz; i++) cols_in[i] = fuzz_u8(&b) & 0x80 ? (int64_t)fuzz_u64(&b, 8) : (int64_t)(fuzz_u8(&b) % (cols + 1));
            columns = cols_in;
            values = fuzz_take(&b, (size_t)nnz * element);
            status = pk_import_csr(offsets, cols_in, values, &out);
        } else if (offsets[rows] < 0) {
            /* A negative last offset: refused before any column is read (one-entry buffers). */
            int64_t one = 0;
            double v = 1;
            status = pk_import_csr(offsets, &one, &v, &out);
        } else {
            status = PK_ERROR_CORRUPT_DATA; /* more entries than this harness allocates: not called */
        }
    } else {
        size_t row_bytes = (size_t)((cols + 7) / 8);
        uint8_t *bits = (uint8_t *)fuzz_take(&b, (size_t)rows * row_bytes);
        structure = bits;
        /* values hold one entry per set bit inside the columns: exactly what a valid mask needs. */
        size_t nnz = 0;
        for (int64_t r = 0; r < rows; r++)
            for (int64_t c = 0; c < cols; c++) nnz += (bits[(size_t)r * row_bytes + (size_t)(c / 8)] >> (c % 8)) & 1;
        values = fuzz_take(&b, nnz * element);
        status = pk_import_bitmask(bits, values, &out);
    }
    fuzz_known_status(status);
    if (status != PK_OK) FUZZ_REQUIRE(memcmp(dense, pristine, out_bytes) == 0, "dense_out written on failure (format %d)", format);
    free(values);
    free(structure);
    free(columns);
    free(dense);
    free(pristine);
    return 0;
}
