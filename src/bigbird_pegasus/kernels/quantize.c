/* A linear layer's weights quantized to int8 per output row, symmetrically (quantize_int8's Int8Linear): a row's
 * scale is its largest magnitude / 127 (1 for a row of zeros), its values w / scale rounded to the nearest integer
 * (ties to even) and clamped to +-127, and the sum of those kept beside (the int8 kernels' correction for the
 * inputs' offset). PyTorch's operators take seven passes and a full-size fp32 temporary for it; here each row is
 * read from memory once (the second pass finds it in cache).
 * GCC/Clang vector extensions; OpenMP over the rows. Compiled by build.py. */
#include <float.h>
#include <stdint.h>

#include "vectors.h"

#define ROUNDING 12582912.0f /* 1.5 * 2^23: x + it - it is x rounded to an integer, ties to even, for |x| < 2^22 */

/* The largest |w| of a row of k values, or -1 when one of them is NaN or infinite. */
static float largest_magnitude(const float* row, int64_t k) {
  int64_t vectors = k - k % LANES;
  lanes largest = {0};
  words finite = (words){0} == 0;
  for (int64_t i = 0; i < vectors; i += LANES) {
    lanes magnitude = (lanes)((words)load_float32(row + i) & 0x7fffffff);
    finite &= magnitude <= FLT_MAX; /* false for NaN and infinity */
    largest = larger(largest, magnitude);
  }
  float most = lane_max(largest);
  int all_finite = 1;
  for (int i = 0; i < LANES; ++i) all_finite &= finite[i] != 0;
  for (int64_t i = vectors; i < k; ++i) {
    float magnitude = row[i] < 0 ? -row[i] : row[i];
    all_finite &= magnitude <= FLT_MAX;
    most = magnitude > most ? magnitude : most;
  }
  return all_finite ? most : -1.0f;
}

/* The entry point: w (n, k) fp32 -> q (n, k) int8, scales (n,) fp32, sums (n,) int32. Returns 0, or 2 when a
 * weight is NaN or infinite (its row and others are then left unwritten). */
int quantize_rows_int8(const float* w, int8_t* q, float* scales, int32_t* sums, int64_t n, int64_t k, int threads) {
  int refused = 0;
#pragma omp parallel for num_threads(threads) schedule(static) reduction(| : refused)
  for (int64_t r = 0; r < n; ++r) {
    const float* row = w + r * k;
    float largest = largest_magnitude(row, k);
    if (largest < 0) {
      refused = 2;
      continue;
    }
    float scale = largest > 0 ? largest / 127.0f : 1.0f;
    int8_t* steps = q + r * k;
    int32_t sum = 0;
    for (int64_t i = 0; i < k; ++i) { /* division, not a product by 1 / scale: PyTorch's rounding, to the bit */
      float step = (row[i] / scale + ROUNDING) - ROUNDING;
      step = step < -127.0f ? -127.0f : (step > 127.0f ? 127.0f : step);
      steps[i] = (int8_t)step;
      sum += (int32_t)step;
    }
    scales[r] = scale;
    sums[r] = sum;
  }
  return refused;
}
