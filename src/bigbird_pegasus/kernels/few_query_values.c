/* out (r, 64) = p (r, s) @ v (s, 64) per head, in fp32, for a few rows of attention weights p (fp32) over a
 * document's values cached in bf16: the second product of a decoding step's cross-attention under
 * reduce_cross_attention_cache / quantize_int8. v is read once per 5 rows, position after position (prefetched a
 * few positions ahead), widened to fp32 in registers; the rows' sums stay in registers. (Over fp32 values
 * PyTorch's batched product is as fast, so there is no fp32 variant.)
 *
 * GCC/Clang vector extensions (16 lanes: AVX-512 registers, two or four elsewhere); OpenMP over the heads.
 * Compiled by build.py. */
#include <stdint.h>

typedef float lanes __attribute__((vector_size(64), aligned(4)));
typedef uint16_t halves __attribute__((vector_size(32), aligned(2)));
typedef uint32_t words __attribute__((vector_size(64)));

#define HEAD_DIM 64
#define ROWS_AT_ONCE 5
#define AHEAD 8 /* positions prefetched ahead: 8 x 128 bytes */

/* bf16 is the top half of an fp32: widen and shift. */
static inline lanes load_bfloat16(const uint16_t* p) {
  words wide = __builtin_convertvector(*(const halves*)p, words) << 16;
  return (lanes)wide;
}

#define VALUES(NAME, T, LOAD)                                                                               \
  static void NAME##_head(const float* p, const T* v, float* out, int64_t rows, int64_t s) {              \
    for (int64_t first = 0; first < rows; first += ROWS_AT_ONCE) {                                          \
      int64_t count = rows - first < ROWS_AT_ONCE ? rows - first : ROWS_AT_ONCE;                            \
      lanes sums[ROWS_AT_ONCE][HEAD_DIM / 16] = {{{0}}};                                                    \
      for (int64_t position = 0; position < s; ++position) {                                                \
        const T* value = v + position * HEAD_DIM;                                                           \
        __builtin_prefetch(value + AHEAD * HEAD_DIM, 0, 3);                                                 \
        __builtin_prefetch(value + AHEAD * HEAD_DIM + 32, 0, 3);                                            \
        lanes parts[HEAD_DIM / 16];                                                                         \
        for (int j = 0; j < HEAD_DIM / 16; ++j) parts[j] = LOAD(value + 16 * j);                            \
        for (int r = 0; r < ROWS_AT_ONCE; ++r) {                                                            \
          if (r < count) {                                                                                  \
            lanes weight = (lanes){0} + p[(first + r) * s + position];                                      \
            for (int j = 0; j < HEAD_DIM / 16; ++j) sums[r][j] += weight * parts[j];                        \
          }                                                                                                 \
        }                                                                                                   \
      }                                                                                                     \
      for (int r = 0; r < count; ++r)                                                                       \
        for (int j = 0; j < HEAD_DIM / 16; ++j) *(lanes*)(out + (first + r) * HEAD_DIM + 16 * j) = sums[r][j]; \
    }                                                                                                       \
  }                                                                                                         \
  int NAME(const float* p, const T* v, float* out, int64_t heads, int64_t rows, int64_t s, int threads) {   \
    _Pragma("omp parallel for num_threads(threads) schedule(static)")                                     \
    for (int64_t head = 0; head < heads; ++head)                                                            \
      NAME##_head(p + head * rows * s, v + head * s * HEAD_DIM, out + head * rows * HEAD_DIM, rows, s);     \
    return 0;                                                                                               \
  }

VALUES(few_query_values_bfloat16, uint16_t, load_bfloat16)
