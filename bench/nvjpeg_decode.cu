// nvJPEG's batched decoding of slide tiles on its own, per backend and batch size: what
// the GPU's JPEG decoding can give flashslide's pipeline at most (bench/RESULTS.md).
// On the GPU machine:
//   python3 bench/jpeg_tiles.py SLIDE.svs /tmp/tiles.bin
//   nvcc -O2 -arch=sm_90 bench/nvjpeg_decode.cu -o /tmp/nvjpeg_decode -lnvjpeg && /tmp/nvjpeg_decode /tmp/tiles.bin
#include <cstdio>
#include <cstdlib>
#include <vector>
#include <chrono>
#include <algorithm>
#include <cuda_runtime.h>
#include "nvjpeg.h"
#define CK(x) do { int s_ = (int)(x); if (s_) { printf("%s failed: %d (line %d)\n", #x, s_, __LINE__); return s_; } } while (0)
int run(nvjpegBackend_t be, const char* name, std::vector<std::vector<unsigned char>>& s, int W, int H, int batch, int reps) {
  nvjpegHandle_t h; int st = nvjpegCreateEx(be, nullptr, nullptr, 0, &h);
  if (st) { printf("%s: create failed %d\n", name, st); return st; }
  nvjpegJpegState_t js; CK(nvjpegJpegStateCreate(h, &js));
  CK(nvjpegDecodeBatchedInitialize(h, js, batch, 1, NVJPEG_OUTPUT_RGBI));
  unsigned char* out; CK(cudaMalloc(&out, (size_t)batch * W * H * 3));
  std::vector<nvjpegImage_t> img(batch);
  for (int i = 0; i < batch; i++) { img[i] = {}; img[i].channel[0] = out + (size_t)i * W * H * 3; img[i].pitch[0] = W * 3; }
  cudaStream_t stream; cudaStreamCreate(&stream);
  int nb = s.size() / batch; std::vector<const unsigned char*> ptr(batch); std::vector<size_t> len(batch);
  double host_call = 0; auto t0 = std::chrono::steady_clock::now();
  for (int r = 0; r < reps + 1; r++) {
    if (r == 1) { cudaStreamSynchronize(stream); t0 = std::chrono::steady_clock::now(); host_call = 0; }
    for (int b = 0; b < nb; b++) {
      for (int i = 0; i < batch; i++) { ptr[i] = s[b * batch + i].data(); len[i] = s[b * batch + i].size(); }
      auto c0 = std::chrono::steady_clock::now();
      int e = nvjpegDecodeBatched(h, js, ptr.data(), len.data(), img.data(), stream);
      host_call += std::chrono::duration<double>(std::chrono::steady_clock::now() - c0).count();
      if (e) { printf("%s: decode failed %d\n", name, e); return e; }
      cudaStreamSynchronize(stream);
    }
  }
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  double n = (double)nb * batch * reps;
  unsigned char probe[6]; cudaMemcpy(probe, out + W * 3 * 100 + 300, 6, cudaMemcpyDeviceToHost);
  printf("%-12s batch %4d: %8.0f tiles/s  %6.0f MP/s  host in call %.0f%%  probe %d %d %d %d %d %d  cuda err %d\n", name, batch, n / secs,
         n * W * H / secs / 1e6, 100 * host_call / secs, probe[0], probe[1], probe[2], probe[3], probe[4], probe[5], (int)cudaGetLastError());
  cudaFree(out); nvjpegJpegStateDestroy(js); nvjpegDestroy(h); return 0;
}
int main(int argc, char** argv) {
  if (argc < 2) { printf("usage: nvjpeg_decode tiles.bin\n"); return 2; }
  FILE* f = fopen(argv[1], "rb");
  unsigned head[3];
  if (!f || fread(head, 4, 3, f) != 3) { printf("cannot read %s\n", argv[1]); return 2; }
  unsigned n = head[0], W = head[1], H = head[2];
  std::vector<std::vector<unsigned char>> all(n);
  for (unsigned i = 0; i < n; i++) {
    unsigned l;
    if (fread(&l, 4, 1, f) != 1) { printf("truncated\n"); return 2; }
    all[i].resize(l);
    if (fread(all[i].data(), 1, l, f) != l) { printf("truncated\n"); return 2; }
  }
  // Tissue tiles: the larger half of the streams (glass compresses to almost nothing).
  std::vector<size_t> lens; for (auto& a : all) lens.push_back(a.size());
  std::sort(lens.begin(), lens.end()); size_t med = lens[lens.size() / 2];
  std::vector<std::vector<unsigned char>> s; for (auto& a : all) if (a.size() >= med && s.size() < 4096) s.push_back(a);
  double mean = 0; for (auto& a : s) mean += a.size(); mean /= s.size();
  printf("%u tiles %ux%u; using %zu of >= %zu bytes (mean %.0f)\n", n, W, H, s.size(), med, mean);
  int comps, ws[4], hs[4]; nvjpegChromaSubsampling_t sub; nvjpegHandle_t h0; nvjpegCreateSimple(&h0);
  printf("info: %d ", nvjpegGetImageInfo(h0, s[0].data(), s[0].size(), &comps, &sub, ws, hs)); printf("comps %d sub %d %dx%d\n", comps, (int)sub, ws[0], hs[0]);
  for (int batch : {64, 256}) {
    run(NVJPEG_BACKEND_HARDWARE, "hardware", s, W, H, batch, 3);
    run(NVJPEG_BACKEND_GPU_HYBRID, "gpu_hybrid", s, W, H, batch, 3);
    run(NVJPEG_BACKEND_DEFAULT, "default", s, W, H, batch, 2);
  }
  return 0;
}
