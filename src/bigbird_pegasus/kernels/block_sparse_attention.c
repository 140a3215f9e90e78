/* out = softmax(scale * q k^T + bias) v for BigBird's block-sparse attention, computed in fp32 over fp32 or bf16
 * q, k, v: each query block of each head against its key blocks, read where they lie (PyTorch's path gathers them
 * into copies first, and its batched attention over the copies runs at half of what this does). Each head's keys
 * and values are first packed contiguous (in fp32); then key block by key block, so that its keys, then its
 * values (16 KB), stay in L1 while the block's queries pass over them: the scores transposed (a key's scores of all
 * queries in vectors, the sums in registers), a softmax down the columns, then the queries' sums of the values (64
 * features in registers, ROWS queries at a time).
 *
 * Layouts (n = blocks x block_size positions, d = 64): q, k, v and out (docs, n, heads x d), as the projections
 * give them; the query blocks computed, each with its key blocks (every head alike) and a bias (docs, query
 * blocks, key blocks x block_size) fp32 added to the scaled scores (the log of how often the reference counts a
 * block, the dtype's minimum for padding and unused slots), or none. The middle query blocks (5 key blocks each in
 * eval mode) and the two global ones (every key block) are two calls on one packing.
 *
 * GCC/Clang vector extensions (16 lanes with AVX-512, 8 elsewhere); OpenMP over (document, head, query block).
 * Compiled by build.py. */
#include <stdint.h>
#include <stdlib.h>

#include "vectors.h"

#define HEAD_DIM 64
#define VALUE_VECTORS (HEAD_DIM / LANES)
#if defined(__AVX512F__)
#define ROWS 4 /* 4 x 4 sums and 4 vectors of values in 32 registers */
#else
#define ROWS 2
#endif

/* Scores of a query block's queries against one key block, transposed: scores_t[j * block_size + r] = query r
 * (scaled) . key j + bias[j] (no bias: + 0). queries_t (64, block_size), feature-major; keys (block_size, 64).
 * VECTORS vectors of queries (VECTORS x LANES of them) against 4 keys a pass, the sums in registers. */
#define SCORE_TILE(VECTORS)                                                                                        \
  static inline void score_block_##VECTORS(const float* queries_t, const float* keys, const float* bias,          \
                                           float* scores_t, int64_t block_size) {                                  \
    for (int64_t r = 0; r < block_size; r += VECTORS * LANES)                                                      \
      for (int64_t j = 0; j < block_size; j += 4) {                                                                \
        lanes sums[4][VECTORS] = {{{0}}};                                                                          \
        for (int feature = 0; feature < HEAD_DIM; ++feature) {                                                     \
          lanes query[VECTORS];                                                                                    \
          for (int t = 0; t < VECTORS; ++t) query[t] = load_float32(queries_t + feature * block_size + r + t * LANES); \
          for (int i = 0; i < 4; ++i)                                                                              \
            for (int t = 0; t < VECTORS; ++t) sums[i][t] += keys[(j + i) * HEAD_DIM + feature] * query[t];        \
        }                                                                                                          \
        for (int i = 0; i < 4; ++i) {                                                                              \
          float added = bias ? bias[j + i] : 0.0f;                                                                 \
          for (int t = 0; t < VECTORS; ++t)                                                                        \
            *(lanes*)(scores_t + (j + i) * block_size + r + t * LANES) = sums[i][t] + added;                       \
        }                                                                                                          \
      }                                                                                                            \
  }
SCORE_TILE(4)
SCORE_TILE(1)

/* Softmax over the keys (rows of scores_t, s of them) of each query (columns, block_size of them) in place,
 * unnormalised (e^(x - max)); 1 / the sums into `inverse`. */
static void exponentiate_columns(float* scores_t, float* inverse, int64_t block_size, int64_t s) {
  for (int64_t r = 0; r < block_size; r += LANES) {
    lanes most = load_float32(scores_t + r);
    for (int64_t j = 1; j < s; ++j) most = larger(most, load_float32(scores_t + j * block_size + r));
    lanes sums = {0};
    for (int64_t j = 0; j < s; ++j) {
      lanes e = exp_nonpositive(load_float32(scores_t + j * block_size + r) - most);
      *(lanes*)(scores_t + j * block_size + r) = e;
      sums += e;
    }
    *(lanes*)(inverse + r) = 1.0f / sums;
  }
}

/* Where a task's scratch (block_size x (2 x 64 + s + 1) floats) keeps what: the queries transposed (64,
 * block_size), the scores transposed (s, block_size), the rows' sums of values (block_size, 64), 1 / their weights'
 * sums (block_size,). */
static inline float* scores_in(float* scratch, int64_t block_size) { return scratch + HEAD_DIM * block_size; }
static inline float* sums_in(float* scratch, int64_t block_size, int64_t s) {
  return scratch + (HEAD_DIM + s) * block_size;
}

/* One query block of one head over its key blocks (k, v: the head's n positions, 64 features each, packed), its
 * queries transposed and scaled in the scratch already: the rows' sums of values and their inverse weights into
 * the scratch. Key block by key block: a block's keys or values (16 KB) stay in L1 while the block's queries pass
 * over them. */
static void attend_block(const float* k, const float* v, const int64_t* blocks, const float* bias, float* scratch,
                         int64_t block_size, int64_t width) {
  int64_t s = width * block_size;
  const float* queries_t = scratch;
  float* scores_t = scores_in(scratch, block_size);
  float(*sums)[HEAD_DIM] = (float(*)[HEAD_DIM])sums_in(scratch, block_size, s);
  for (int64_t w = 0; w < width; ++w) {
    const float* keys = k + blocks[w] * block_size * HEAD_DIM;
    float* scores = scores_t + w * block_size * block_size;
    if (block_size % (4 * LANES) == 0)
      score_block_4(queries_t, keys, bias ? bias + w * block_size : 0, scores, block_size);
    else
      score_block_1(queries_t, keys, bias ? bias + w * block_size : 0, scores, block_size);
  }
  exponentiate_columns(scores_t, (float*)(sums + block_size), block_size, s);
  for (int64_t w = 0; w < width; ++w) {
    const float* values = v + blocks[w] * block_size * HEAD_DIM;
    const float* weights = scores_t + w * block_size * block_size;
    for (int64_t r = 0; r < block_size; r += ROWS) {
      lanes sum[ROWS][VALUE_VECTORS];
      for (int i = 0; i < ROWS; ++i)
        for (int t = 0; t < VALUE_VECTORS; ++t) sum[i][t] = w ? load_float32(&sums[r + i][t * LANES]) : (lanes){0};
      for (int64_t j = 0; j < block_size; ++j) {
        lanes value[VALUE_VECTORS];
        for (int t = 0; t < VALUE_VECTORS; ++t) value[t] = load_float32(values + j * HEAD_DIM + t * LANES);
        for (int i = 0; i < ROWS; ++i)
          for (int t = 0; t < VALUE_VECTORS; ++t) sum[i][t] += weights[j * block_size + r + i] * value[t];
      }
      for (int i = 0; i < ROWS; ++i)
        for (int t = 0; t < VALUE_VECTORS; ++t) *(lanes*)&sums[r + i][t * LANES] = sum[i][t];
    }
  }
}

/* The entry points, for q, k, v and out of type T (fp32, or bf16 computed in fp32): query blocks query_blocks[i]
 * (i < count) over key blocks key_blocks[i] (count, width) with bias (docs, count, width x block_size) or none;
 * `packed` holds 2 x docs x heads x n x 64 floats: with `pack`, k and v are packed into it first, else it holds
 * them from an earlier call on the same k and v. Returns 0; 1 when block_size is not a multiple of LANES (the
 * caller checks it first); 2 when a thread's scratch could not be allocated (the queries it had are not computed).
 *
 * The packing: k, v (docs, n, heads x 64) -> packed (2, docs, heads, n, 64), each head's keys, then values,
 * contiguous in fp32 (read where they lie, rows 4 KB apart for 16 heads, the blocks' rows fall into the same few
 * sets of L1 and evict each other: the products ran at half speed). */
#define BLOCK_SPARSE_ATTENTION(NAME, T, LOAD, LOAD_ONE, STORE)                                                    \
  static void NAME##_pack(const T* k, const T* v, float* packed, int64_t docs, int64_t heads, int64_t n) {     \
    int64_t row_stride = heads * HEAD_DIM, half = docs * heads * n * HEAD_DIM;                                  \
    _Pragma("omp for collapse(2) schedule(static)")                                                             \
    for (int64_t doc = 0; doc < docs; ++doc)                                                                    \
      for (int64_t position = 0; position < n; ++position)                                                      \
        for (int64_t head = 0; head < heads; ++head) {                                                          \
          int64_t from = (doc * n + position) * row_stride + head * HEAD_DIM;                                   \
          float* to = packed + ((doc * heads + head) * n + position) * HEAD_DIM;                                \
          for (int t = 0; t < VALUE_VECTORS; ++t) {                                                             \
            *(lanes*)(to + t * LANES) = LOAD(k + from + t * LANES);                                             \
            *(lanes*)(to + half + t * LANES) = LOAD(v + from + t * LANES);                                      \
          }                                                                                                     \
        }                                                                                                       \
  }                                                                                                             \
                                                                                                                \
  int NAME(const T* q, const T* k, const T* v, float* packed, int pack, const int64_t* query_blocks,            \
           const int64_t* key_blocks, const float* bias, T* out, int64_t docs, int64_t heads, int64_t blocks,   \
           int64_t block_size, int64_t count, int64_t width, float scale, int threads) {                        \
    if (block_size % LANES != 0) return 1;                                                                      \
    int64_t n = blocks * block_size, row_stride = heads * HEAD_DIM, s = width * block_size;                     \
    const float* packed_values = packed + docs * heads * n * HEAD_DIM;                                          \
    int status = 0;                                                                                             \
    _Pragma("omp parallel num_threads(threads)") {                                                              \
      if (pack) NAME##_pack(k, v, packed, docs, heads, n);                                                      \
      float* scratch = malloc(sizeof(float) * block_size * (2 * HEAD_DIM + s + 1));                             \
      if (!scratch) {                                                                                           \
        _Pragma("omp atomic write") status = 2;                                                                 \
      }                                                                                                         \
      _Pragma("omp for collapse(3) schedule(static)")                                                           \
      for (int64_t doc = 0; doc < docs; ++doc)                                                                  \
        for (int64_t head = 0; head < heads; ++head)                                                            \
          for (int64_t i = 0; i < count; ++i) {                                                                 \
            if (!scratch) continue;                                                                             \
            int64_t at = (doc * n + query_blocks[i] * block_size) * row_stride + head * HEAD_DIM;               \
            int64_t own = (doc * heads + head) * n * HEAD_DIM;                                                  \
            for (int64_t r = 0; r < block_size; ++r)                                                            \
              for (int feature = 0; feature < HEAD_DIM; ++feature)                                              \
                scratch[feature * block_size + r] = LOAD_ONE(q + at + r * row_stride + feature) * scale;        \
            attend_block(packed + own, packed_values + own, key_blocks + i * width,                             \
                         bias ? bias + (doc * count + i) * s : 0, scratch, block_size, width);                  \
            const float* sums = sums_in(scratch, block_size, s);                                                \
            const float* inverse = sums + block_size * HEAD_DIM;                                                \
            for (int64_t r = 0; r < block_size; ++r)                                                            \
              for (int t = 0; t < VALUE_VECTORS; ++t)                                                           \
                STORE(out + at + r * row_stride + t * LANES,                                                    \
                      load_float32(sums + r * HEAD_DIM + t * LANES) * inverse[r]);                              \
          }                                                                                                     \
      free(scratch);                                                                                            \
    }                                                                                                           \
    return status;                                                                                              \
  }

BLOCK_SPARSE_ATTENTION(block_sparse_attention_float32, float, load_float32, float32, store_float32)
BLOCK_SPARSE_ATTENTION(block_sparse_attention_bfloat16, uint16_t, load_bfloat16, bfloat16, store_bfloat16)
