/* y (rows, n) = x (rows, k) @ (w (n, k) * w_scale (n,)[:, None])^T (+ bias (n,)) for a few rows, w in int8: a
 * decoding step's products after quantize_int8. The rows of x are quantized on the fly, each to int8 with its own
 * scale (max |x| / 127), and their int32 sums of products with w are exact on either instruction set:
 * - AVX-512 VNNI: the quantized values offset by 128 to uint8, so that vpdpbusd multiplies 64 byte pairs per
 *   instruction; the offset is taken back with each weight row's sum (w_sums, precomputed):
 *     sum_i (q_i + 128) w_i - 128 sum_i w_i = sum_i q_i w_i.
 * - AVX2 (no VNNI): the quantized values as int16 and 16 weights at a time widened to int16, vpmaddwd summing
 *   pairs of products into int32 (|q w| <= 127 x 127: exact, where vpmaddubsw's int16 pair sums would saturate).
 * Each thread streams its own contiguous part of w, OUT weight rows at a time (prefetching the next OUT rows: the
 * hardware prefetcher alone leaves it at ~60% of bandwidth), keeping rows x OUT sums in registers. 1 to 8 rows in
 * one pass; more (a batch of documents' beams) in groups of 5 against each block of weight rows, the weights still
 * read from memory once.
 *
 * Built with AVX-512 VNNI or AVX2 (`-march=native` on a CPU that has them); elsewhere
 * few_row_int8_linear_supported() returns 0 and the caller keeps PyTorch's int8 layers. Compiled by build.py. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#if (defined(__AVX512VNNI__) && defined(__AVX512BW__)) || (defined(__AVX2__) && defined(__FMA__))
#include <immintrin.h>

int few_row_int8_linear_supported(void) { return 1; }

#define LINE 64 /* weight bytes of a row read in each step of the inner loop (a cache line) */

/* One output from its dot product: dot x x_scale x w_scale + bias. */
static inline float finish_one(int32_t dot, float x_scale, float w_scale, const float* bias) {
  float scaled = (float)dot * x_scale;
  return bias ? fmaf(scaled, w_scale, *bias) : scaled * w_scale;
}

/* y[0..3] of one row from the 4 dot products in `dots`: scaled, + bias, 4 lanes at a time, the same arithmetic as
 * `finish_one` (the scale and bias in one fused multiply-add written out, so that the compiler's contraction
 * cannot differ between the two: a row's outputs then do not depend on how many rows share its call). */
static inline void finish_dots(__m128i dots, float x_scale, const float* w_scale, const float* bias, float* y) {
  __m128 scaled = _mm_mul_ps(_mm_cvtepi32_ps(dots), _mm_set1_ps(x_scale));
  _mm_storeu_ps(y, bias ? _mm_fmadd_ps(scaled, _mm_loadu_ps(w_scale), _mm_loadu_ps(bias))
                        : _mm_mul_ps(scaled, _mm_loadu_ps(w_scale)));
}

#if defined(__AVX512VNNI__) && defined(__AVX512BW__)

typedef uint8_t quantized; /* a row's value as the products read it: q + 128 */
typedef __m512i sums;
#define BYTES 64   /* weights one product instruction takes */

/* Row r of x (k floats) as k quantized values and its scale. */
static void quantize_row(const float* x, quantized* q, float* scale, int64_t k) {
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

static inline sums no_sums(void) { return _mm512_setzero_si512(); }
static inline sums load_weights(const int8_t* w) { return _mm512_loadu_si512(w); }
static inline sums load_row(const quantized* q) { return _mm512_loadu_si512(q); }
static inline sums load_row_for_several(const quantized* q) { return load_row(q); }
static inline sums multiply_add(sums s, sums row, sums weights) { return _mm512_dpbusd_epi32(s, row, weights); }
/* The dot product of one row and weight row from their sums: the offset taken back. */
static inline int32_t dot(sums s, int32_t w_sum) { return _mm512_reduce_add_epi32(s) - 128 * w_sum; }

/* y[0..3] of one row from its 4 sums: the lane sums at once (a transposing tree of unpacks, not 4 reductions), less
 * the offset, then `finish_dots`: what the products of many rows, bound by arithmetic, spend at the end of each
 * block. The sums by value, so that they stay in registers (an array passed by address was spilled to the stack at
 * every block). */
static inline void finish_four(sums a, sums b, sums c, sums d, float x_scale, const float* w_scale,
                               const int32_t* w_sums, const float* bias, float* y) {
  __m512i ab = _mm512_add_epi32(_mm512_unpacklo_epi32(a, b), _mm512_unpackhi_epi32(a, b));
  __m512i cd = _mm512_add_epi32(_mm512_unpacklo_epi32(c, d), _mm512_unpackhi_epi32(c, d));
  __m512i four = _mm512_add_epi32(_mm512_unpacklo_epi64(ab, cd), _mm512_unpackhi_epi64(ab, cd)); /* a b c d x 4 */
  __m256i half = _mm256_add_epi32(_mm512_castsi512_si256(four), _mm512_extracti64x4_epi64(four, 1));
  __m128i dots = _mm_add_epi32(_mm256_castsi256_si128(half), _mm256_extracti128_si256(half, 1));
  dots = _mm_sub_epi32(dots, _mm_slli_epi32(_mm_loadu_si128((const __m128i*)w_sums), 7)); /* - 128 x sums */
  finish_dots(dots, x_scale, w_scale, bias, y);
}

#else /* AVX2: 16 registers */

typedef int16_t quantized;
typedef __m256i sums;
#define BYTES 16   /* weights one product instruction takes (widened to int16) */

static void quantize_row(const float* x, quantized* q, float* scale, int64_t k) {
  const __m256 magnitude = _mm256_castsi256_ps(_mm256_set1_epi32(0x7FFFFFFF));
  __m256 largest = _mm256_setzero_ps();
  for (int64_t i = 0; i < k; i += 8)
    largest = _mm256_max_ps(largest, _mm256_and_ps(_mm256_loadu_ps(x + i), magnitude)); /* max |x| */
  __m128 half = _mm_max_ps(_mm256_castps256_ps128(largest), _mm256_extractf128_ps(largest, 1));
  half = _mm_max_ps(half, _mm_movehl_ps(half, half));
  float amax = _mm_cvtss_f32(_mm_max_ss(half, _mm_movehdup_ps(half)));
  *scale = amax > 0.0f ? amax / 127.0f : 1.0f;
  __m256 inverse = _mm256_set1_ps(amax > 0.0f ? 127.0f / amax : 0.0f);
  for (int64_t i = 0; i < k; i += 8) {
    __m256i rounded = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + i), inverse)); /* nearest, ties even */
    _mm_storeu_si128((__m128i*)(q + i), _mm_packs_epi32(_mm256_castsi256_si128(rounded),
                                                        _mm256_extracti128_si256(rounded, 1)));
  }
}

static inline sums no_sums(void) { return _mm256_setzero_si256(); }
static inline sums load_weights(const int8_t* w) {
  return _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i*)w));
}
static inline sums load_row(const quantized* q) { return _mm256_loadu_si256((const __m256i*)q); }
/* A row's part that several weight rows multiply, loaded into a register once: left to itself GCC 12 folded the
 * load into each multiply-add, loading it OUT times (a beam of 5 two weight rows at a time: a step's layers
 * 1.06-1.17x and the LM head 1.02-1.12x faster so on the AMD EPYC Zen 3, scratch `/tmp/s31/ab.py`; whole steps
 * within the noise). */
static inline sums load_row_for_several(const quantized* q) {
  sums row = load_row(q);
  __asm__("" : "+x"(row));
  return row;
}
/* The sum made here, in a register: an empty asm the compiler cannot see through, so that it does not reassociate
 * the integer sums of a block's parts (GCC 12 summed the products of a line's 4 parts first, spilling half of the
 * block's sums to the stack at every line: a step's layers and the LM head 1.15-1.22x slower on the AMD EPYC Zen 3,
 * scratch `/tmp/s30/ab.py`). */
static inline sums multiply_add(sums s, sums row, sums weights) {
  sums total = _mm256_add_epi32(s, _mm256_madd_epi16(row, weights));
  __asm__("" : "+x"(total));
  return total;
}
static inline __m128i lane_sums(sums s) {
  return _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
}
static inline int32_t dot(sums s, int32_t w_sum) {
  (void)w_sum; /* no offset to take back */
  __m128i four = lane_sums(s);
  __m128i two = _mm_add_epi32(four, _mm_unpackhi_epi64(four, four));
  return _mm_cvtsi128_si32(_mm_add_epi32(two, _mm_shuffle_epi32(two, 1)));
}

static inline void finish_four(sums a, sums b, sums c, sums d, float x_scale, const float* w_scale,
                               const int32_t* w_sums, const float* bias, float* y) {
  (void)w_sums;
  __m128i a4 = lane_sums(a), b4 = lane_sums(b), c4 = lane_sums(c), d4 = lane_sums(d);
  __m128i ab = _mm_add_epi32(_mm_unpacklo_epi32(a4, b4), _mm_unpackhi_epi32(a4, b4));
  __m128i cd = _mm_add_epi32(_mm_unpacklo_epi32(c4, d4), _mm_unpackhi_epi32(c4, d4));
  finish_dots(_mm_add_epi32(_mm_unpacklo_epi64(ab, cd), _mm_unpackhi_epi64(ab, cd)), x_scale, w_scale, bias, y);
}

#endif

/* OUT weight rows from `first` on, against all ROWS rows of q; k is a positive multiple of LINE. With
 * `prefetch_next`, prefetches the next OUT weight rows as it goes (the first pass over a block; later groups of
 * rows find it in cache, and prefetching it again only took load slots). Always inlined, and called with a
 * constant `prefetch_next`: a branch in the loop had the compiler spill sums to the stack. */
#define BLOCK(ROWS, OUT)                                                                                    \
  static inline __attribute__((always_inline)) void block_##ROWS##_##OUT(                                   \
      const quantized* q, const float* x_scale, const int8_t* w, const float* w_scale,                     \
      const int32_t* w_sums, const float* bias, float* y, int64_t n, int64_t k, int64_t first,              \
      int prefetch_next) {                                                                                  \
    sums total[ROWS][OUT];                                                                                  \
    for (int r = 0; r < ROWS; ++r)                                                                          \
      for (int o = 0; o < OUT; ++o) total[r][o] = no_sums();                                                \
    const int8_t* weights = w + first * k;                                                                  \
    int64_t i = 0;                                                                                          \
    do { /* not a for loop: with no zero-trip case the compiler keeps the sums in registers */              \
      if (prefetch_next)                                                                                    \
        for (int o = 0; o < OUT; ++o)                                                                       \
          _mm_prefetch((const char*)(weights + (OUT + o) * k + i), _MM_HINT_T0);                            \
      for (int part = 0; part < LINE; part += BYTES) {                                                      \
        sums weight[OUT];                                                                                   \
        for (int o = 0; o < OUT; ++o) weight[o] = load_weights(weights + o * k + i + part);                 \
        for (int r = 0; r < ROWS; ++r) {                                                                    \
          sums row = OUT > 1 ? load_row_for_several(q + r * k + i + part) : load_row(q + r * k + i + part); \
          for (int o = 0; o < OUT; ++o) total[r][o] = multiply_add(total[r][o], row, weight[o]);            \
        }                                                                                                   \
      }                                                                                                     \
      i += LINE;                                                                                            \
    } while (i < k);                                                                                        \
    for (int r = 0; r < ROWS; ++r) {                                                                        \
      if (OUT == 4) { /* (indices % OUT: in range where OUT < 4, which never comes here) */                \
        finish_four(total[r][0], total[r][1 % OUT], total[r][2 % OUT], total[r][3 % OUT], x_scale[r],       \
                    w_scale + first, w_sums + first, bias ? bias + first : 0, y + r * n + first);           \
        continue;                                                                                           \
      }                                                                                                     \
      for (int o = 0; o < OUT; ++o) {                                                                       \
        int64_t out = first + o;                                                                            \
        int32_t product = dot(total[r][o], w_sums[out]);                                                    \
        y[r * n + out] = finish_one(product, x_scale[r], w_scale[out], bias ? bias + out : 0);              \
      }                                                                                                     \
    }                                                                                                       \
  }

/* All `ROWS` rows against the weights, OUT weight rows a block (the last n % OUT one at a time). */
#define ROWS_FUNCTION(ROWS, OUT)                                                                            \
  static void rows_##ROWS(const quantized* q, const float* x_scale, const int8_t* w, const float* w_scale, \
                          const int32_t* w_sums, const float* bias, float* y, int64_t n, int64_t k,         \
                          int threads) {                                                                    \
    int64_t blocked = n - n % OUT;                                                                          \
    _Pragma("omp parallel for num_threads(threads) schedule(static)")                                     \
    for (int64_t first = 0; first < blocked; first += OUT)                                                  \
      block_##ROWS##_##OUT(q, x_scale, w, w_scale, w_sums, bias, y, n, k, first, 1);                        \
    for (int64_t first = blocked; first < n; ++first)                                                       \
      block_##ROWS##_1(q, x_scale, w, w_scale, w_sums, bias, y, n, k, first, 1);                            \
  }

/* More rows (a batch of beams): groups of up to MANY_ROWS rows against each block of MANY_OUT weight rows, so that
 * the weights are still read from memory once; the groups after the first find the block in cache. */
#define MANY_ROWS 5
/* Rows from `row` on against the block at `first`: the first group prefetches the next block. */
#define IN_GROUP(ROWS, OUT)                                                                                 \
  (row == 0 ? block_##ROWS##_##OUT(chunk, scale, w, w_scale, w_sums, bias, out, n, k, first, 1)             \
            : block_##ROWS##_##OUT(chunk, scale, w, w_scale, w_sums, bias, out, n, k, first, 0))
#define GROUP(OUT)                                                                                          \
  static inline void group_##OUT(const quantized* q, const float* x_scale, const int8_t* w,                \
                                 const float* w_scale, const int32_t* w_sums, const float* bias, float* y,  \
                                 int64_t rows, int64_t n, int64_t k, int64_t first) {                       \
    for (int64_t row = 0; row < rows; row += MANY_ROWS) {                                                   \
      const quantized* chunk = q + row * k;                                                                 \
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

/* The blocks each row count takes: as many sums as the registers hold beside OUT weights and a row. */
BLOCK(1, 1) BLOCK(2, 1) BLOCK(3, 1) BLOCK(4, 1) BLOCK(5, 1) BLOCK(6, 1) BLOCK(7, 1) BLOCK(8, 1)
#if BYTES == 64 /* AVX-512: 32 registers */
BLOCK(1, 4) BLOCK(2, 4) BLOCK(3, 4) BLOCK(4, 4) BLOCK(5, 4) BLOCK(6, 3) BLOCK(7, 3) BLOCK(8, 3)
ROWS_FUNCTION(1, 4) ROWS_FUNCTION(2, 4) ROWS_FUNCTION(3, 4) ROWS_FUNCTION(4, 4) ROWS_FUNCTION(5, 4)
ROWS_FUNCTION(6, 3) ROWS_FUNCTION(7, 3) ROWS_FUNCTION(8, 3)
GROUP(4)
#define group_many group_4
#define MANY_OUT 4
#else /* AVX2: 16 registers; 3 rows one weight row at a time (as fast as two), 4 to 6 two at a time (each row's part
      * loaded once: `load_row_for_several`) */
BLOCK(1, 4) BLOCK(2, 4) BLOCK(1, 2) BLOCK(2, 2) BLOCK(3, 2) BLOCK(4, 2) BLOCK(5, 2) BLOCK(6, 2)
ROWS_FUNCTION(1, 4) ROWS_FUNCTION(2, 4) ROWS_FUNCTION(3, 1) ROWS_FUNCTION(4, 2) ROWS_FUNCTION(5, 2)
ROWS_FUNCTION(6, 2) ROWS_FUNCTION(7, 1) ROWS_FUNCTION(8, 1)
GROUP(2)
#define group_many group_2
#define MANY_OUT 2
#endif
GROUP(1)

static void rows_many(const quantized* q, const float* x_scale, const int8_t* w, const float* w_scale,
                      const int32_t* w_sums, const float* bias, float* y, int64_t rows, int64_t n, int64_t k,
                      int threads) {
  int64_t blocked = n - n % MANY_OUT;
#pragma omp parallel for num_threads(threads) schedule(static)
  for (int64_t first = 0; first < blocked; first += MANY_OUT)
    group_many(q, x_scale, w, w_scale, w_sums, bias, y, rows, n, k, first);
  for (int64_t first = blocked; first < n; ++first) group_1(q, x_scale, w, w_scale, w_sums, bias, y, rows, n, k, first);
}

/* The entry point: any number of rows, one pass over w. Returns 0, 1 when rows or k are out of range (k a positive
 * multiple of 64), 3 when out of memory. */
int few_row_int8_linear(const float* x, const int8_t* w, const float* w_scale, const int32_t* w_sums,
                        const float* bias, float* y, int64_t rows, int64_t n, int64_t k, int threads) {
  if (k % LINE != 0 || k < LINE || rows < 1) return 1;
  quantized* q = malloc((size_t)(rows * k) * sizeof(quantized));
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
