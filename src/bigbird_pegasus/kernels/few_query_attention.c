/* out (r, 64) = softmax(scale * q (r, 64) @ k (64, s) + bias (s)) @ v (s, 64) per head, in fp32, for a few query
 * rows: a decoding step's cross-attention (the beams of a document, r <= 16) over the document's keys and values,
 * cached in fp32 or bf16. One pass per head reads the keys once (laid out position-minor: each feature's positions
 * contiguous, the features `stride` elements apart: the cache pads them, see `_padded_length` in
 * modeling/attention.py) into a row of scores per query, a softmax over each row, and one pass reads the values once
 * (position-major) into the rows' sums; the sums stay in registers, the next positions are prefetched as each is
 * read (the two batched products of PyTorch read them ~35% below bandwidth). Below it, the step's self-attention
 * over each beam's own past (few_query_self_attention).
 *
 * GCC/Clang vector extensions (16 lanes with AVX-512, 8 elsewhere); OpenMP over the heads.
 * Compiled by build.py. */
#include <stdint.h>
#include <stdlib.h>

#include "vectors.h"

/* A beam's 5 rows at once, so that each head's keys and values are read once. The scores' sums stay in registers:
 * 5 x KEY_VECTORS of them, KEY_VECTORS keys and a query (AVX-512, 32 registers: 4 keys; AVX2, 16 registers of 8
 * lanes: 2). The values' 5 x 64 sums fit AVX-512's registers; with AVX2 bf16 values take a group of features at a
 * time (BFLOAT16_GROUP below) and fp32 ones spill, which still beat 2 rows at a time (3 passes over the values) on
 * a 2-core AMD EPYC Zen 3: 11-13 against 14-17 ms over a step's 16 layers of a 4096-token document in fp32 and in
 * bf16, and the scores with 2 keys against 4 keys at 2 rows: 15-21 against 25-28 ms (scratch harness, each pass on
 * its own). */
#define ROWS_AT_ONCE 5
#if defined(__AVX512F__)
#define KEY_VECTORS 4
#else
#define KEY_VECTORS 2
#endif

#define HEAD_DIM 64
#define TILE (KEY_VECTORS * LANES) /* positions scored at once */
#define KEYS_AHEAD 512    /* bytes of each feature's keys prefetched ahead */
#define VALUES_AHEAD 4096 /* bytes of values prefetched ahead */
/* The values' features summed at once, in vectors (the values pass's GROUP), and the positions (CHUNK) they take
 * before the next group takes the same ones from cache: all 64 at once with AVX-512 (5 x 4 sums in registers) and
 * for fp32 values (read at bandwidth: in groups 0.84-0.91x as fast on the AMD EPYC Zen 3); bf16 values with AVX2 16
 * at a time (5 x 2 sums in registers, where all 64 spilled to the stack): a step's 16 cross-attentions over a
 * 4096-token bf16 cache 1.04-1.07x faster there over 128 positions, 1.10-1.25x with bfloat16_tile's even/odd
 * widening, and 1.11x faster again over 16 positions than over 128 (8: as 16; 32: 1.04x slower; scratch
 * `/tmp/s30/attab.py`, alternating builds, medians of 9-11). */
#define FLOAT32_GROUP (HEAD_DIM / LANES)
#if LANES == 16
#define BFLOAT16_GROUP (HEAD_DIM / LANES)
#else
#define BFLOAT16_GROUP 2
#endif
#define CHUNK 16

/* Softmax of each of `rows` rows of s scores in place, unnormalised (e^(x - max)); 1 / the sums into `inverse`. */
static void exponentiate(float* scores, float* inverse, int64_t rows, int64_t s) {
  for (int64_t r = 0; r < rows; ++r) {
    float* row = scores + r * s;
    int64_t vectors = s - s % LANES;
    float most = row[0];
    if (vectors) {
      lanes high = load_float32(row);
      for (int64_t p = LANES; p < vectors; p += LANES) high = larger(high, load_float32(row + p));
      most = lane_max(high);
    }
    for (int64_t p = vectors; p < s; ++p) most = row[p] > most ? row[p] : most;
    lanes sums = {0};
    for (int64_t p = 0; p < vectors; p += LANES) {
      lanes e = exp_nonpositive(load_float32(row + p) - most);
      *(lanes*)(row + p) = e;
      sums += e;
    }
    float sum = lane_sum(sums);
    for (int64_t p = vectors; p < s; ++p) {
      lanes e = exp_nonpositive(splat(row[p] - most));
      row[p] = e[0];
      sum += e[0];
    }
    inverse[r] = 1.0f / sum;
  }
}

/* `count` x LANES consecutive values as `count` vectors, and sums of them back in order. fp32: in order. bf16
 * (`count` even): 2 x LANES values at a time split into their even and odd ones (a shift and a mask, where widening
 * LANES at a time took a shuffle and a shift each), so that the vectors hold values 0 2 .. | 1 3 .. | ...;
 * `in_order` interleaves such pairs back. Each value's arithmetic is the same either way: only the lane it passes
 * through differs. */
static inline void float32_tile(const float* p, lanes* v, int count) {
  for (int j = 0; j < count; ++j) v[j] = load_float32(p + j * LANES);
}
static inline void float32_in_order(lanes* v, int count) { (void)v, (void)count; }
typedef uint32_t bfloat16_pairs __attribute__((vector_size(4 * LANES), aligned(2))); /* 2 x LANES bf16, unaligned */
static inline void bfloat16_tile(const uint16_t* p, lanes* v, int count) {
  for (int j = 0; j < count; j += 2) {
    bfloat16_pairs pairs = *(const bfloat16_pairs*)(p + j * LANES); /* value 2i in the low 16 bits of word i */
    v[j] = (lanes)(pairs << 16);
    v[j + 1] = (lanes)(pairs & 0xFFFF0000u);
  }
}
static inline void bfloat16_in_order(lanes* v, int count) {
  for (int j = 0; j < count; j += 2) {
    lanes even = v[j], odd = v[j + 1];
#if LANES == 16
    v[j] = __builtin_shufflevector(even, odd, 0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
    v[j + 1] = __builtin_shufflevector(even, odd, 8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
#else
    v[j] = __builtin_shufflevector(even, odd, 0, 8, 1, 9, 2, 10, 3, 11);
    v[j + 1] = __builtin_shufflevector(even, odd, 4, 12, 5, 13, 6, 14, 7, 15);
#endif
  }
}

#define ATTENTION(NAME, T, KIND, LINE, GROUP)                                                                   \
  /* Scores (rows, s) of the queries q (rows, 64), scaled, against keys k (64, s; rows `stride` apart), + bias \
   * (s,) when given. */                                                                                       \
  static void NAME##_scores(const float* q, const T* k, const float* bias, float* scores, int64_t rows,        \
                            int64_t s, int64_t stride, float scale) {                                          \
    int64_t tiled = s - s % TILE;                                                                              \
    for (int64_t first = 0; first < rows; first += ROWS_AT_ONCE) {                                             \
      int64_t count = rows - first < ROWS_AT_ONCE ? rows - first : ROWS_AT_ONCE;                               \
      float queries[ROWS_AT_ONCE][HEAD_DIM] = {{0}}; /* rows past `count` stay 0 */                            \
      for (int64_t r = 0; r < count; ++r)                                                                      \
        for (int d = 0; d < HEAD_DIM; ++d) queries[r][d] = q[(first + r) * HEAD_DIM + d] * scale;              \
      for (int64_t p = 0; p < tiled; p += TILE) {                                                              \
        lanes sums[ROWS_AT_ONCE][KEY_VECTORS] = {{{0}}};                                                       \
        for (int d = 0; d < HEAD_DIM; ++d) {                                                                   \
          const T* keys = k + d * stride + p;                                                                  \
          for (int line = 0; line < TILE; line += LINE)                                                        \
            __builtin_prefetch(keys + KEYS_AHEAD / sizeof(T) + line, 0, 3);                                    \
          lanes key[KEY_VECTORS];                                                                              \
          KIND##_tile(keys, key, KEY_VECTORS);                                                                 \
          for (int r = 0; r < ROWS_AT_ONCE; ++r) {                                                             \
            lanes query = splat(queries[r][d]);                                                                \
            for (int j = 0; j < KEY_VECTORS; ++j) sums[r][j] += query * key[j];                                \
          }                                                                                                    \
        }                                                                                                      \
        for (int64_t r = 0; r < count; ++r) {                                                                  \
          KIND##_in_order(sums[r], KEY_VECTORS);                                                               \
          for (int j = 0; j < KEY_VECTORS; ++j) {                                                              \
            lanes row = sums[r][j];                                                                            \
            if (bias) row += load_float32(bias + p + j * LANES);                                               \
            *(lanes*)(scores + (first + r) * s + p + j * LANES) = row;                                         \
          }                                                                                                    \
        }                                                                                                      \
      }                                                                                                        \
      for (int64_t p = tiled; p < s; ++p)                                                                      \
        for (int64_t r = 0; r < count; ++r) {                                                                  \
          float sum = 0.0f;                                                                                    \
          for (int d = 0; d < HEAD_DIM; ++d) sum += queries[r][d] * KIND(k + d * stride + p);                  \
          scores[(first + r) * s + p] = sum + (bias ? bias[p] : 0.0f);                                         \
        }                                                                                                      \
    }                                                                                                          \
  }                                                                                                            \
                                                                                                               \
  /* out (rows, 64) = weights (rows, s) @ v (s, 64), each row times its `inverse`; weights' rows are padded to \
   * a multiple of ROWS_AT_ONCE with zeros. GROUP features at a time over CHUNK positions (then the next      \
   * GROUP over the same positions, from cache), so that the ROWS_AT_ONCE x GROUP sums stay in registers.     \
   * Each sum still adds its positions in order. */                                                           \
  static void NAME##_values(const float* weights, const float* inverse, const T* v, float* out, int64_t rows,  \
                            int64_t s) {                                                                       \
    for (int64_t first = 0; first < rows; first += ROWS_AT_ONCE) {                                             \
      int64_t count = rows - first < ROWS_AT_ONCE ? rows - first : ROWS_AT_ONCE;                               \
      lanes sums[ROWS_AT_ONCE][HEAD_DIM / LANES] = {{{0}}};                                                    \
      for (int64_t chunk = 0; chunk < s; chunk += CHUNK) {                                                     \
        int64_t end = chunk + CHUNK < s ? chunk + CHUNK : s;                                                   \
        for (int group = 0; group < HEAD_DIM / LANES; group += GROUP) {                                        \
          lanes group_sums[ROWS_AT_ONCE][GROUP];                                                               \
          for (int r = 0; r < ROWS_AT_ONCE; ++r)                                                               \
            for (int j = 0; j < GROUP; ++j) group_sums[r][j] = sums[r][group + j];                             \
          for (int64_t p = chunk; p < end; ++p) {                                                              \
            const T* value = v + p * HEAD_DIM;                                                                 \
            if (group == 0)                                                                                    \
              for (int line = 0; line < HEAD_DIM; line += LINE)                                                \
                __builtin_prefetch(value + VALUES_AHEAD / sizeof(T) + line, 0, 3);                             \
            lanes parts[GROUP];                                                                                \
            KIND##_tile(value + group * LANES, parts, GROUP);                                                  \
            for (int r = 0; r < ROWS_AT_ONCE; ++r) {                                                           \
              lanes weight = splat(weights[(first + r) * s + p]);                                              \
              for (int j = 0; j < GROUP; ++j) group_sums[r][j] += weight * parts[j];                           \
            }                                                                                                  \
          }                                                                                                    \
          for (int r = 0; r < ROWS_AT_ONCE; ++r)                                                               \
            for (int j = 0; j < GROUP; ++j) sums[r][group + j] = group_sums[r][j];                             \
        }                                                                                                      \
      }                                                                                                        \
      for (int64_t r = 0; r < count; ++r) {                                                                    \
        KIND##_in_order(sums[r], HEAD_DIM / LANES);                                                            \
        for (int j = 0; j < HEAD_DIM / LANES; ++j)                                                             \
          *(lanes*)(out + (first + r) * HEAD_DIM + j * LANES) = sums[r][j] * inverse[first + r];               \
      }                                                                                                        \
    }                                                                                                          \
  }                                                                                                            \
                                                                                                               \
  /* The entry point: q (docs, heads, rows, 64) fp32, k (docs, heads, 64, key_stride: the first s of each      \
   * row), v (docs, heads, s, 64), bias (docs, s) fp32 or NULL -> out (docs, heads, rows, 64) fp32. Returns 0,  \
   * or 1 when out of memory. */                                                                               \
  int NAME(const float* q, const T* k, const T* v, const float* bias, float* out, int64_t docs, int64_t heads, \
           int64_t rows, int64_t s, int64_t key_stride, float scale, int threads) {                            \
    int64_t padded = (rows + ROWS_AT_ONCE - 1) / ROWS_AT_ONCE * ROWS_AT_ONCE;                                  \
    int failed = 0;                                                                                            \
    _Pragma("omp parallel for num_threads(threads) schedule(static) reduction(|:failed)")                      \
    for (int64_t task = 0; task < docs * heads; ++task) {                                                      \
      float* scores = calloc((size_t)(padded * s + padded), sizeof(float));                                    \
      if (!scores) {                                                                                           \
        failed = 1;                                                                                            \
        continue;                                                                                              \
      }                                                                                                        \
      float* inverse = scores + padded * s;                                                                    \
      const float* doc_bias = bias ? bias + task / heads * s : 0;                                              \
      NAME##_scores(q + task * rows * HEAD_DIM, k + task * key_stride * HEAD_DIM, doc_bias, scores, rows, s,   \
                    key_stride, scale);                                                                        \
      exponentiate(scores, inverse, rows, s);                                                                  \
      NAME##_values(scores, inverse, v + task * s * HEAD_DIM, out + task * rows * HEAD_DIM, rows, s);          \
      free(scores);                                                                                            \
    }                                                                                                          \
    return failed;                                                                                             \
  }

ATTENTION(few_query_attention_float32, float, float32, 16, FLOAT32_GROUP)
ATTENTION(few_query_attention_bfloat16, uint16_t, bfloat16, 32, BFLOAT16_GROUP)

/* Whether the two above beat PyTorch's batched products on this build: measured with AVX-512 (Xeon) and with AVX2
 * (a 2-core AMD EPYC Zen 3, where with them and the whole-step kernel, which needs them, an fp32 decoding step
 * took 0.090-0.098 against 0.119-0.127 s, the encoder 15.6-17.3 against 17.3-17.9 s, and a step over a bf16 cache
 * 0.086-0.089 against PyTorch's 1.68-1.74 s). Elsewhere (NEON) unmeasured: they do not serve. */
int few_query_attention_supported(void) {
#if defined(__AVX512F__) || defined(__AVX2__)
  return 1;
#else
  return 0;
#endif
}

/* A decoding step's self-attention of each beam's new query over its own past, read through `origins` instead of a
 * cache reordered for the beams at every step: q (rows, heads, 64), k and v (stored rows, heads, capacity, 64) as
 * written (position p of any beam in the stored row of the beam that wrote it), origins (rows, capacity): the
 * stored row holding position p of beam i (NULL: row i), bias (1 or rows, capacity) fp32 or NULL, the first
 * `length` positions attended -> out (rows, heads, 64). Returns 0, or 1 when out of memory. */
int few_query_self_attention(const float* q, const float* k, const float* v, const int64_t* origins,
                             const float* bias, int64_t bias_rows, float* out, int64_t rows, int64_t heads,
                             int64_t capacity, int64_t length, float scale, int threads) {
  int failed = 0;
#pragma omp parallel for num_threads(threads) schedule(static) reduction(| : failed)
  for (int64_t task = 0; task < rows * heads; ++task) {
    int64_t head = task / rows, row = task % rows; /* a head's beams one after another: their shared pasts cached */
    float* weights = malloc((size_t)(length + 1) * sizeof(float));
    if (!weights) {
      failed = 1;
      continue;
    }
    const int64_t* origin = origins ? origins + row * capacity : 0;
    const float* row_bias = bias ? bias + (bias_rows > 1 ? row : 0) * capacity : 0;
    lanes query[HEAD_DIM / LANES];
    const float* row_query = q + (row * heads + head) * HEAD_DIM;
    for (int j = 0; j < HEAD_DIM / LANES; ++j) query[j] = load_float32(row_query + j * LANES) * scale;
    for (int64_t p = 0; p < length; ++p) {
      const float* key = k + (((origin ? origin[p] : row) * heads + head) * capacity + p) * HEAD_DIM;
      lanes products = query[0] * load_float32(key);
      for (int j = 1; j < HEAD_DIM / LANES; ++j) products += query[j] * load_float32(key + j * LANES);
      weights[p] = lane_sum(products) + (row_bias ? row_bias[p] : 0.0f);
    }
    exponentiate(weights, weights + length, 1, length);
    lanes sums[HEAD_DIM / LANES] = {0};
    for (int64_t p = 0; p < length; ++p) {
      const float* value = v + (((origin ? origin[p] : row) * heads + head) * capacity + p) * HEAD_DIM;
      for (int j = 0; j < HEAD_DIM / LANES; ++j) sums[j] += weights[p] * load_float32(value + j * LANES);
    }
    for (int j = 0; j < HEAD_DIM / LANES; ++j)
      *(lanes*)(out + (row * heads + head) * HEAD_DIM + j * LANES) = sums[j] * weights[length];
    free(weights);
  }
  return failed;
}
