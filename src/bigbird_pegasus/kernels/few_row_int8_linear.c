/* y (rows, n) = x (rows, k) @ (w (n, k) * w_scale (n,)[:, None])^T (+ bias (n,)) for a few rows, w in int8: a
 * decoding step's products after quantize_int8. The rows of x are quantized on the fly, each to int8 with its own
 * scale (max |x| / 127), then offset by 128 to uint8, so that AVX-512 VNNI's vpdpbusd multiplies 64 byte pairs
 * per instruction; the offset is taken back with each weight row's sum (w_sums, precomputed):
 *   sum_i (q_i + 128) w_i - 128 sum_i w_i = sum_i q_i w_i.
 * Each thread streams its own contiguous part of w, OUT weight rows at a time (prefetching the next OUT rows: the
 * hardware prefetcher alone leaves it at ~60% of bandwidth), keeping rows x OUT sums. 1 to 8 rows in one pass;
 * more (a batch of documents' beams) in groups of 5 against each block of weight rows, the weights still read from
 * memory once.
 *
 * Only built with AVX-512 VNNI (`-march=native` on a CPU that has it); elsewhere
 * few_row_int8_linear_supported() returns 0 and the caller keeps PyTorch's int8 layers. Compiled by build.py. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#if defined(__AVX512VNNI__) && defined(__AVX512BW__)
#include <immintrin.h>

int few_row_int8_linear_supported(void) { return 1; }

#define BYTES 64 /* one vpdpbusd: 64 byte pairs */

/* Row r of x (k floats) as k uint8 (quantized + 128) and its scale. */
static void quantize_row(const float* x, uint8_t* q, float* scale, int64_t k) {
  __m512 largest = _mm512_setzero_ps();
  for (int64_t i = 0; i < k; i += 16) largest = _mm512_max_ps(largest, _mm512_abs_ps(_mm512_loadu_ps(x + i)));
  float amax = _mm512_reduce_max_ps(largest);
  *scale = amax > 0.0f ? amax / 127.0f : 1.0f;
  __m512 inverse = _mm512_set1_ps(amax > 0.0f ? 127.0f / amax : 0.0f);
  __m512i offset = _mm512_set1_epi32(128);
  for (int64_t i = 0; i < k; i += 16) {
    __m512i rounded = _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_loadu_ps(x + i), inverse)); /* nearest, ties even */
    _mm_storeu_si128((__m128i*)(q + i), _mm512_cvtusepi32_epi8(_mm512_add_epi32(rounded, offset)));
  }
}

/* One output from its dot product (the offset taken back): dot x x_scale x w_scale + bias. */
static inline float finish_one(int32_t dot, float x_scale, float w_scale, const float* bias) {
  float scaled = (float)dot * x_scale;
  return bias ? fmaf(scaled, w_scale, *bias) : scaled * w_scale;
}

/* y[0..3] of one row from its 4 sums of byte products: the lane sums at once (a transposing tree of unpacks, not 4
 * reductions), less the offset, scaled, + bias, 4 lanes at a time: what the products of many rows, bound by
 * arithmetic, spend at the end of each block. The same arithmetic as `finish_one`: the scale and bias in one fused
 * multiply-add written out, so that the compiler's contraction cannot differ between the two (a row's outputs
 * then do not depend on how many rows share its call). The sums by value, so that they stay in registers (an array
 * passed by address was spilled to the stack at every block). */
static inline void finish_four(__m512i a, __m512i b, __m512i c, __m512i d, float x_scale, const float* w_scale,
                               const int32_t* w_sums, const float* bias, float* y) {
  __m512i ab = _mm512_add_epi32(_mm512_unpacklo_epi32(a, b), _mm512_unpackhi_epi32(a, b));
  __m512i cd = _mm512_add_epi32(_mm512_unpacklo_epi32(c, d), _mm512_unpackhi_epi32(c, d));
  __m512i four = _mm512_add_epi32(_mm512_unpacklo_epi64(ab, cd), _mm512_unpackhi_epi64(ab, cd)); /* a b c d x 4 */
  __m256i half = _mm256_add_epi32(_mm512_castsi512_si256(four), _mm512_extracti64x4_epi64(four, 1));
  __m128i dots = _mm_add_epi32(_mm256_castsi256_si128(half), _mm256_extracti128_si256(half, 1));
  dots = _mm_sub_epi32(dots, _mm_slli_epi32(_mm_loadu_si128((const __m128i*)w_sums), 7)); /* - 128 x sums */
  __m128 scaled = _mm_mul_ps(_mm_cvtepi32_ps(dots), _mm_set1_ps(x_scale));
  _mm_storeu_ps(y, bias ? _mm_fmadd_ps(scaled, _mm_loadu_ps(w_scale), _mm_loadu_ps(bias))
                        : _mm_mul_ps(scaled, _mm_loadu_ps(w_scale)));
}

/* OUT weight rows from `first` on, against all ROWS rows of q; k is a positive multiple of BYTES. With
 * `prefetch_next`, prefetches the next OUT weight rows as it goes (the first pass over a block; later groups of
 * rows find it in cache, and prefetching it again only took load slots). Always inlined, and called with a
 * constant `prefetch_next`: a branch in the loop had the compiler spill sums to the stack. */
#define BLOCK(ROWS, OUT)                                                                                    \
  static inline __attribute__((always_inline)) void block_##ROWS##_##OUT(                                   \
      const uint8_t* q, const float* x_scale, const int8_t* w, const float* w_scale, const int32_t* w_sums, \
      const float* bias, float* y, int64_t n, int64_t k, int64_t first, int prefetch_next) {                \
    __m512i sums[ROWS][OUT];                                                                                \
    for (int r = 0; r < ROWS; ++r)                                                                          \
      for (int o = 0; o < OUT; ++o) sums[r][o] = _mm512_setzero_si512();                                    \
    const int8_t* weights = w + first * k;                                                                  \
    int64_t i = 0;                                                                                          \
    do { /* not a for loop: with no zero-trip case the compiler keeps the sums in registers */              \
      __m512i weight[OUT];                                                                                  \
      for (int o = 0; o < OUT; ++o) {                                                                       \
        weight[o] = _mm512_loadu_si512(weights + o * k + i);                                                \
        if (prefetch_next) _mm_prefetch((const char*)(weights + (OUT + o) * k + i), _MM_HINT_T0);           \
      }                                                                                                     \
      for (int r = 0; r < ROWS; ++r) {                                                                      \
        __m512i row = _mm512_loadu_si512(q + r * k + i);                                                    \
        for (int o = 0; o < OUT; ++o) sums[r][o] = _mm512_dpbusd_epi32(sums[r][o], row, weight[o]);        \
      }                                                                                                     \
      i += BYTES;                                                                                           \
    } while (i < k);                                                                                        \
    for (int r = 0; r < ROWS; ++r) {                                                                        \
      if (OUT == 4) { /* (indices % OUT: in range where OUT < 4, which never comes here) */                \
        finish_four(sums[r][0], sums[r][1 % OUT], sums[r][2 % OUT], sums[r][3 % OUT], x_scale[r],           \
                    w_scale + first, w_sums + first, bias ? bias + first : 0, y + r * n + first);           \
        continue;                                                                                           \
      }                                                                                                     \
      for (int o = 0; o < OUT; ++o) {                                                                       \
        int64_t out = first + o;                                                                            \
        int32_t dot = _mm512_reduce_add_epi32(sums[r][o]) - 128 * w_sums[out];                             \
        y[r * n + out] = finish_one(dot, x_scale[r], w_scale[out], bias ? bias + out : 0);                  \
      }                                                                                                     \
    }                                                                                                       \
  }

#define KERNEL(ROWS, OUT)                                                                                   \
  BLOCK(ROWS, OUT)                                                                                          \
  BLOCK(ROWS, 1)                                                                                            \
  static void rows_##ROWS(const uint8_t* q, const float* x_scale, const int8_t* w, const float* w_scale,   \
                           const int32_t* w_sums, const float* bias, float* y, int64_t n, int64_t k,        \
                           int threads) {                                                                   \
    int64_t blocked = n - n % OUT;                                                                          \
    _Pragma("omp parallel for num_threads(threads) schedule(static)")                                     \
    for (int64_t first = 0; first < blocked; first += OUT)                                                  \
      block_##ROWS##_##OUT(q, x_scale, w, w_scale, w_sums, bias, y, n, k, first, 1);                        \
    for (int64_t first = blocked; first < n; ++first)                                                       \
      block_##ROWS##_1(q, x_scale, w, w_scale, w_sums, bias, y, n, k, first, 1);                            \
  }

KERNEL(1, 4)
KERNEL(2, 4)
KERNEL(3, 4)
KERNEL(4, 4)
KERNEL(5, 4)
KERNEL(6, 3)
KERNEL(7, 3)
KERNEL(8, 3)

/* More rows (a batch of beams): groups of up to MANY_ROWS rows against each block of 4 weight rows, so that the
 * weights are still read from memory once; the groups after the first find the block in cache. */
#define MANY_ROWS 5
/* Rows from `row` on against the block at `first`: the first group prefetches the next block. */
#define IN_GROUP(ROWS, OUT)                                                                                 \
  (row == 0 ? block_##ROWS##_##OUT(chunk, scale, w, w_scale, w_sums, bias, out, n, k, first, 1)             \
            : block_##ROWS##_##OUT(chunk, scale, w, w_scale, w_sums, bias, out, n, k, first, 0))
#define GROUP(OUT)                                                                                          \
  static inline void group_##OUT(const uint8_t* q, const float* x_scale, const int8_t* w,                  \
                                 const float* w_scale, const int32_t* w_sums, const float* bias, float* y,  \
                                 int64_t rows, int64_t n, int64_t k, int64_t first) {                       \
    for (int64_t row = 0; row < rows; row += MANY_ROWS) {                                                   \
      const uint8_t* chunk = q + row * k;                                                                   \
      const float* scale = x_scale + row;                                                                   \
      float* out = y + row * n;                                                                             \
      switch (rows - row < MANY_ROWS ? rows - row : MANY_ROWS) {                                            \
        case 1: IN_GROUP(1, OUT); break;                                                                    \
        case 2: IN_GROUP(2, OUT); break;                                                                    \
        case 3: IN_GROUP(3, OUT); break;                                                                    \
        case 4: IN_GROUP(4, OUT); break;                                                                    \
        default: IN_GROUP(5, OUT);                                                                          \
      }                                                                                                     \
    }                                                                                                       \
  }
GROUP(4)
GROUP(1)

static void rows_many(const uint8_t* q, const float* x_scale, const int8_t* w, const float* w_scale,
                      const int32_t* w_sums, const float* bias, float* y, int64_t rows, int64_t n, int64_t k,
                      int threads) {
  int64_t blocked = n - n % 4;
#pragma omp parallel for num_threads(threads) schedule(static)
  for (int64_t first = 0; first < blocked; first += 4)
    group_4(q, x_scale, w, w_scale, w_sums, bias, y, rows, n, k, first);
  for (int64_t first = blocked; first < n; ++first) group_1(q, x_scale, w, w_scale, w_sums, bias, y, rows, n, k, first);
}

/* The entry point: any number of rows, one pass over w. Returns 0, 1 when rows or k are out of range (k a positive
 * multiple of 64), 3 when out of memory. */
int few_row_int8_linear(const float* x, const int8_t* w, const float* w_scale, const int32_t* w_sums,
                        const float* bias, float* y, int64_t rows, int64_t n, int64_t k, int threads) {
  if (k % BYTES != 0 || k < BYTES || rows < 1) return 1;
  uint8_t* q = malloc((size_t)(rows * k));
  float* x_scale = malloc((size_t)rows * sizeof(float));
  if (!q || !x_scale) { free(q); free(x_scale); return 3; }
  for (int64_t r = 0; r < rows; ++r) quantize_row(x + r * k, q + r * k, x_scale + r, k);
  switch (rows) {
    case 1: rows_1(q, x_scale, w, w_scale, w_sums, bias, y, n, k, threads); break;
    case 2: rows_2(q, x_scale, w, w_scale, w_sums, bias, y, n, k, threads); break;
    case 3: rows_3(q, x_scale, w, w_scale, w_sums, bias, y, n, k, threads); break;
    case 4: rows_4(q, x_scale, w, w_scale, w_sums, bias, y, n, k, threads); break;
    case 5: rows_5(q, x_scale, w, w_scale, w_sums, bias, y, n, k, threads); break;
    case 6: rows_6(q, x_scale, w, w_scale, w_sums, bias, y, n, k, threads); break;
    case 7: rows_7(q, x_scale, w, w_scale, w_sums, bias, y, n, k, threads); break;
    case 8: rows_8(q, x_scale, w, w_scale, w_sums, bias, y, n, k, threads); break;
    default: rows_many(q, x_scale, w, w_scale, w_sums, bias, y, rows, n, k, threads); break;
  }
  free(q);
  free(x_scale);
  return 0;
}

#else

int few_row_int8_linear_supported(void) { return 0; }

int few_row_int8_linear(const float* x, const int8_t* w, const float* w_scale, const int32_t* w_sums,
                        const float* bias, float* y, int64_t rows, int64_t n, int64_t k, int threads) {
  (void)x; (void)w; (void)w_scale; (void)w_sums; (void)bias; (void)y; (void)rows; (void)n; (void)k; (void)threads;
  return 2;
}

#endif
