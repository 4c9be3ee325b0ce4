// Model tiles assembled from stored slide tiles decoded on the GPU (src/backend/jpeg_batch.rs says
// what the arguments hold): each output value the mean of factor × factor level pixels,
// rounded to nearest; a level pixel comes from the first of its model tile's placed stored
// tiles that holds it, glass (white) where none does or past the level's edge: exactly what
// JpegBatch::assemble and the CPU's read_tile compute from the same decoded pixels.
#include "common.cuh"

extern "C" __global__ void assemble_tiles(const unsigned char* stored, const int* starts, const int* sources,
                                          const i64* corners, const i64* origins, unsigned char* out,
                                          int tiles, int tile_px, int factor, int stored_w, int stored_h,
                                          i64 level_w, i64 level_h) {
    const i64 per_tile = (i64)tile_px * tile_px;
    const unsigned area = (unsigned)(factor * factor);
    GRID_STRIDE(i, (i64)tiles * per_tile) {
        const int t = (int)(i / per_tile);
        const int oy = (int)(i % per_tile) / tile_px, ox = (int)(i % per_tile) % tile_px;
        const i64 x0 = origins[2 * t], y0 = origins[2 * t + 1];
        const int first = starts[t], last = starts[t + 1];
        unsigned sum[3] = {0, 0, 0};
        for (int j = 0; j < factor; j++) {
            const i64 y = y0 + (i64)oy * factor + j;
            for (int k = 0; k < factor; k++) {
                const i64 x = x0 + (i64)ox * factor + k;
                int p = last;
                if (x >= 0 && y >= 0 && x < level_w && y < level_h) {
                    for (p = first; p < last; p++) {
                        const i64 px = corners[2 * p], py = corners[2 * p + 1];
                        if (x >= px && x < px + stored_w && y >= py && y < py + stored_h) break;
                    }
                }
                if (p == last) {
                    sum[0] += 255; sum[1] += 255; sum[2] += 255;
                    continue;
                }
                const i64 dx = x - corners[2 * p], dy = y - corners[2 * p + 1];
                const unsigned char* px = stored + (((i64)sources[p] * stored_h + dy) * stored_w + dx) * 3;
                sum[0] += px[0]; sum[1] += px[1]; sum[2] += px[2];
            }
        }
        unsigned char* o = out + i * 3;
        for (int c = 0; c < 3; c++) o[c] = (unsigned char)((sum[c] + area / 2) / area);
    }
}
