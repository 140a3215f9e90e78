/* y (rows, n) = x (rows, k) @ w (n, k)^T (+ bias (n,)) in fp32 for a few rows: a decoding step's products, where
 * the weights are read once and the rows stay in registers. Each thread streams its own contiguous part of w, OUT
 * weight rows at a time (prefetching the next OUT rows as it goes: the hardware prefetcher alone leaves the reads
 * ~25% short of bandwidth), and keeps rows x OUT sums of 16 lanes (8 without AVX-512). 1 to 8 rows in one pass;
 * more (a batch of documents' beams) in groups of 5 against each block of weight rows, the weights still read
 * from memory once.
 *
 * Portable C: GCC/Clang vector extensions, lowered to AVX-512, AVX2 or NEON by -march=native. Threads: OpenMP
 * (the same runtime as PyTorch's when it is loaded first). Compiled by build.py. */
#include <stdint.h>

#if defined(__AVX512F__)
typedef float lanes __attribute__((vector_size(64), aligned(4)));  /* 16 floats, unaligned loads allowed */
#define LANES 16
#else /* AVX2 or NEON: 16 vector registers, so 8 lanes and fewer sums at once */
typedef float lanes __attribute__((vector_size(32), aligned(4)));
#define LANES 8
#endif

static inline float lane_sum(lanes a) {
  float sum = 0.0f;
  for (int i = 0; i < LANES; ++i) sum += a[i];
  return sum;
}

/* The lane sums of 4 vectors at once: a transposing tree of shuffles, instead of 4 sums of LANES lanes each (what
 * the products of many rows, bound by arithmetic, spend at the end of each block). By value, so that the sums stay
 * in registers (an array passed by address was zeroed and spilled to the stack at every block). */
typedef float quad __attribute__((vector_size(16), aligned(4)));
static inline quad sum_four(lanes a, lanes b, lanes c, lanes d) {
#if LANES == 16
  lanes ab = __builtin_shufflevector(a, b, 0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23) +
             __builtin_shufflevector(a, b, 8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31);
  lanes cd = __builtin_shufflevector(c, d, 0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23) +
             __builtin_shufflevector(c, d, 8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31);
  /* ab: 8 partial sums of a, then 8 of b; cd alike */
  lanes quarters = __builtin_shufflevector(ab, cd, 0, 1, 2, 3, 8, 9, 10, 11, 16, 17, 18, 19, 24, 25, 26, 27) +
                   __builtin_shufflevector(ab, cd, 4, 5, 6, 7, 12, 13, 14, 15, 20, 21, 22, 23, 28, 29, 30, 31);
  /* quarters: 4 partial sums of each of a, b, c, d */
  lanes pairs = __builtin_shufflevector(quarters, quarters, 0, 1, 4, 5, 8, 9, 12, 13, 0, 1, 4, 5, 8, 9, 12, 13) +
                __builtin_shufflevector(quarters, quarters, 2, 3, 6, 7, 10, 11, 14, 15, 2, 3, 6, 7, 10, 11, 14, 15);
  return __builtin_shufflevector(pairs, pairs, 0, 2, 4, 6) + __builtin_shufflevector(pairs, pairs, 1, 3, 5, 7);
#else
  return (quad){lane_sum(a), lane_sum(b), lane_sum(c), lane_sum(d)};
#endif
}

/* OUT weight rows from `first` on, against all ROWS rows of x; k is a positive multiple of LANES. With
 * `prefetch_next`, prefetches the next OUT weight rows as it goes (the first pass over a block; later groups of
 * rows find it in cache, and prefetching it again only took load slots). Always inlined, and called with a
 * constant `prefetch_next`: a branch in the loop had the compiler spill sums to the stack. */
#define BLOCK(ROWS, OUT)                                                                                    \
  static inline __attribute__((always_inline)) void block_##ROWS##_##OUT(                                   \
      const float* x, const float* w, const float* bias, float* y, int64_t n, int64_t k, int64_t first,     \
      int prefetch_next) {                                                                                  \
    lanes sums[ROWS][OUT];                                                                                  \
    for (int r = 0; r < ROWS; ++r)                                                                          \
      for (int o = 0; o < OUT; ++o) sums[r][o] = (lanes){0};                                                \
    const float* weights = w + first * k;                                                                   \
    int64_t i = 0;                                                                                          \
    do { /* not a for loop: with no zero-trip case the compiler keeps the sums in registers */              \
      lanes weight[OUT];                                                                                    \
      for (int o = 0; o < OUT; ++o) {                                                                       \
        weight[o] = *(const lanes*)(weights + o * k + i);                                                   \
        if (prefetch_next) __builtin_prefetch(weights + (OUT + o) * k + i, 0, 3);                           \
      }                                                                                                     \
      for (int r = 0; r < ROWS; ++r) {                                                                      \
        lanes row = *(const lanes*)(x + r * k + i);                                                         \
        for (int o = 0; o < OUT; ++o) sums[r][o] += row * weight[o];                                        \
      }                                                                                                     \
      i += LANES;                                                                                           \
    } while (i < k);                                                                                        \
    for (int r = 0; r < ROWS; ++r) {                                                                        \
      if (OUT == 4) { /* (indices % OUT: in range where OUT < 4, which never comes here) */                \
        quad total = sum_four(sums[r][0], sums[r][1 % OUT], sums[r][2 % OUT], sums[r][3 % OUT]);            \
        if (bias) total += *(const quad*)(bias + first);                                                    \
        *(quad*)(y + r * n + first) = total;                                                                \
        continue;                                                                                           \
      }                                                                                                     \
      for (int o = 0; o < OUT; ++o)                                                                         \
        y[r * n + first + o] = lane_sum(sums[r][o]) + (bias ? bias[first + o] : 0.0f);                      \
    }                                                                                                       \
  }

/* linear_ROWS: OUT weight rows at a time, the last n % OUT one at a time. */
#define KERNEL(ROWS, OUT)                                                                                   \
  BLOCK(ROWS, OUT)                                                                                          \
  BLOCK(ROWS, 1)                                                                                            \
  LOOP(ROWS, OUT)
#define KERNEL_ONE_ROW_AT_A_TIME(ROWS)                                                                      \
  BLOCK(ROWS, 1)                                                                                            \
  LOOP(ROWS, 1)
#define LOOP(ROWS, OUT)                                                                                     \
  static void linear_##ROWS(const float* x, const float* w, const float* bias, float* y, int64_t n,         \
                            int64_t k, int threads) {                                                       \
    int64_t blocked = n - n % OUT;                                                                          \
    _Pragma("omp parallel for num_threads(threads) schedule(static)")                                     \
    for (int64_t first = 0; first < blocked; first += OUT)                                                  \
      block_##ROWS##_##OUT(x, w, bias, y, n, k, first, 1);                                                  \
    for (int64_t first = blocked; first < n; ++first) block_##ROWS##_1(x, w, bias, y, n, k, first, 1);      \
  }

/* ROWS x OUT sums, OUT weight vectors and one row's stay within the vector registers: 32 in AVX-512, 16 else. */
#if defined(__AVX512F__)
KERNEL(1, 4)
KERNEL(2, 4)
KERNEL(3, 4)
KERNEL(4, 4)
KERNEL(5, 4)
KERNEL(6, 3)
KERNEL(7, 3)
KERNEL(8, 2)
#else
KERNEL(1, 2)
KERNEL(2, 2)
KERNEL(3, 2)
KERNEL(4, 2)
KERNEL(5, 2)
KERNEL_ONE_ROW_AT_A_TIME(6)
KERNEL_ONE_ROW_AT_A_TIME(7)
KERNEL_ONE_ROW_AT_A_TIME(8)
#endif

/* More rows (a batch of beams): groups of up to MANY_ROWS rows against each block of MANY_OUT weight rows, so that
 * the weights are still read from memory once; the groups after the first find the block in cache. */
#if defined(__AVX512F__)
#define MANY_OUT 4
#else
#define MANY_OUT 2
#endif
#define MANY_ROWS 5
#define ONE_PASS_ROWS 8 /* the most rows one pass keeps in registers (the kernels above) */
/* Rows from `row` on against the block at `first`: the first group prefetches the next block. */
#define IN_GROUP(ROWS, OUT)                                                                                 \
  (row == 0 ? block_##ROWS##_##OUT(chunk, w, bias, out, n, k, first, 1)                                     \
            : block_##ROWS##_##OUT(chunk, w, bias, out, n, k, first, 0))
#define GROUP_NAME(OUT) group_##OUT
#define GROUP_OF(OUT) GROUP_NAME(OUT) /* the group function of OUT, expanded */
#define DEFINE_GROUP(OUT) GROUP(OUT)
#define GROUP(OUT)                                                                                          \
  static inline void group_##OUT(const float* x, const float* w, const float* bias, float* y, int64_t rows, \
                                 int64_t n, int64_t k, int64_t first) {                                     \
    for (int64_t row = 0; row < rows; row += MANY_ROWS) {                                                   \
      const float* chunk = x + row * k;                                                                     \
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
DEFINE_GROUP(MANY_OUT)
GROUP(1)

static void linear_many(const float* x, const float* w, const float* bias, float* y, int64_t rows, int64_t n,
                        int64_t k, int threads) {
  int64_t blocked = n - n % MANY_OUT;
#pragma omp parallel for num_threads(threads) schedule(static)
  for (int64_t first = 0; first < blocked; first += MANY_OUT) GROUP_OF(MANY_OUT)(x, w, bias, y, rows, n, k, first);
  for (int64_t first = blocked; first < n; ++first) group_1(x, w, bias, y, rows, n, k, first);
}

/* The entry point; returns 0, or 1 when rows or k are out of range (the caller checks them first). */
int few_row_linear(const float* x, const float* w, const float* bias, float* y, int64_t rows, int64_t n,
                   int64_t k, int threads) {
  if (k % LANES != 0 || k < LANES || rows < 1) return 1;
  if (rows > ONE_PASS_ROWS) {
    linear_many(x, w, bias, y, rows, n, k, threads);
    return 0;
  }
  switch (rows) {
    case 1: linear_1(x, w, bias, y, n, k, threads); return 0;
    case 2: linear_2(x, w, bias, y, n, k, threads); return 0;
    case 3: linear_3(x, w, bias, y, n, k, threads); return 0;
    case 4: linear_4(x, w, bias, y, n, k, threads); return 0;
    case 5: linear_5(x, w, bias, y, n, k, threads); return 0;
    case 6: linear_6(x, w, bias, y, n, k, threads); return 0;
    case 7: linear_7(x, w, bias, y, n, k, threads); return 0;
    case 8: linear_8(x, w, bias, y, n, k, threads); return 0;
  }
  return 1;
}
