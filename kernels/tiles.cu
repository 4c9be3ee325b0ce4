// Model tiles assembled from stored slide tiles decoded on the GPU (src/backend/jpeg_batch.rs says
// what the arguments hold): each output value the mean of factor × factor level pixels,
// rounded to nearest, glass (past the level's edge, or a tile the file leaves out) white:
// exactly what the CPU's read_tile computes from the same decoded pixels.
#include "common.cuh"

extern "C" __global__ void assemble_tiles(const unsigned char* stored, const int* sources, const i64* origins,
                                          unsigned char* out, int tiles, int tile_px, int factor,
                                          int stored_w, int stored_h, int span_x, int span_y,
                                          i64 level_w, i64 level_h) {
    const i64 per_tile = (i64)tile_px * tile_px;
    const unsigned area = (unsigned)(factor * factor);
    GRID_STRIDE(i, (i64)tiles * per_tile) {
        const int t = (int)(i / per_tile);
        const int oy = (int)(i % per_tile) / tile_px, ox = (int)(i % per_tile) % tile_px;
        const i64 x0 = origins[2 * t], y0 = origins[2 * t + 1];
        const i64 first_col = x0 / stored_w, first_row = y0 / stored_h;
        const int* table = sources + (i64)t * span_x * span_y;
        unsigned sum[3] = {0, 0, 0};
        for (int j = 0; j < factor; j++) {
            const i64 y = y0 + (i64)oy * factor + j;
            for (int k = 0; k < factor; k++) {
                const i64 x = x0 + (i64)ox * factor + k;
                int source = -1;
                if (x < level_w && y < level_h)
                    source = table[(y / stored_h - first_row) * span_x + (x / stored_w - first_col)];
                if (source < 0) {
                    sum[0] += 255; sum[1] += 255; sum[2] += 255;
                    continue;
                }
                const unsigned char* p = stored +
                    (((i64)source * stored_h + y % stored_h) * stored_w + x % stored_w) * 3;
                sum[0] += p[0]; sum[1] += p[1]; sum[2] += p[2];
            }
        }
        unsigned char* o = out + i * 3;
        for (int c = 0; c < 3; c++) o[c] = (unsigned char)((sum[c] + area / 2) / area);
    }
}
