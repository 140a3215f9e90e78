/* A decoding step through all the decoder's layers in one call, for the rows of a step (beams: 1 to 40 rows):
 * per layer, pre-LayerNorm self-attention over each row's past (the new keys/values written into the cache at
 * `position` first), cross-attention over each document's cached keys/values, and the feed-forward block, each
 * added to the residual x in place. The products and attentions are the other kernels of this folder; here are the
 * layer norms, the activation, the copies between layouts and the residual sums: what PyTorch's eager step spends
 * ~20% of its time dispatching (one operator at a time from Python, ~150 a layer).
 *
 * Each linear layer is fp32 or int8 (quantize_int8); the cross-attention keys/values fp32 or bf16. Head size 64.
 * GCC/Clang vector extensions. Compiled by build.py. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kernels.h"
#include "vectors.h"

#define HEAD_DIM 64
#define MAX_ROWS 40

/* y (rows, n) = x (rows, k) @ weight (n, k)^T + bias: an fp32 weight, or int8 rows with `scale` and `sums`. */
typedef struct {
  const void* weight;
  const float* scale; /* (n,) int8 rows' scales; NULL: the weight is fp32 */
  const int32_t* sums; /* (n,) int8 rows' sums */
  const float* bias;   /* (n,) or NULL */
  int64_t n, k;
} step_linear;

typedef struct {
  const float *norm_weight, *norm_bias; /* (d_model,) each */
} step_norm;

typedef struct {
  step_norm self_norm;
  step_linear q, k, v, out;
  float *keys, *values; /* (rows, heads, capacity, 64): the self-attention cache as stored, written at `position` */
  step_norm cross_norm;
  step_linear cross_q, cross_out;
  const void *cross_keys, *cross_values; /* (docs, heads, 64, key_stride) position-minor, (docs, heads, s, 64) */
  step_norm final_norm;
  step_linear fc1, fc2;
} step_layer;

typedef struct {
  int64_t rows, docs, heads, ffn, capacity, position, source_length;
  int64_t key_stride;      /* of the cross-attention keys' rows: source_length or more (padded) */
  const int64_t* origins;  /* (rows, capacity): the stored row of each row's position p; NULL: row i */
  const float* self_bias;  /* (self_bias_rows, capacity) or NULL */
  int64_t self_bias_rows;
  const float* cross_bias; /* (docs, source_length) or NULL */
  int cross_bfloat16;      /* the cross-attention keys/values are bf16 */
  int cross_attention;     /* 0: a decoder without encoder states (no cross-attention) */
  int activation;          /* enum activation */
  float norm_eps;
  int threads;
} step_shape;

static int linear(const step_linear* layer, const float* x, float* y, int64_t rows, int threads) {
  if (layer->scale)
    return few_row_int8_linear(x, layer->weight, layer->scale, layer->sums, layer->bias, y, rows, layer->n, layer->k,
                               threads);
  return few_row_linear(x, layer->weight, layer->bias, y, rows, layer->n, layer->k, threads);
}

/* y (rows, d) = LayerNorm(x) with the norm's weight and bias; d a multiple of LANES. */
static void layer_norm(const step_norm* norm, const float* x, float* y, int64_t rows, int64_t d, float eps) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* row = x + r * d;
    lanes sums = {0};
    for (int64_t i = 0; i < d; i += LANES) sums += load_float32(row + i);
    float mean = lane_sum(sums) / (float)d;
    lanes squares = {0};
    for (int64_t i = 0; i < d; i += LANES) {
      lanes centred = load_float32(row + i) - mean;
      squares += centred * centred;
    }
    float inverse_std = 1.0f / sqrtf(lane_sum(squares) / (float)d + eps);
    for (int64_t i = 0; i < d; i += LANES)
      *(lanes*)(y + r * d + i) = (load_float32(row + i) - mean) * inverse_std * load_float32(norm->norm_weight + i) +
                                 load_float32(norm->norm_bias + i);
  }
}

static void add_into(float* x, const float* y, int64_t n) {
  for (int64_t i = 0; i < n; i += LANES) *(lanes*)(x + i) = load_float32(x + i) + load_float32(y + i);
}

/* x (rows, d) += out_proj(self-attention(LayerNorm(x))), the step's keys and values written into the cache. */
static int self_attention_block(const step_layer* layer, const step_shape* shape, float* x, float* normed, float* q,
                                float* k, float* v, float* attended, float* projected, int64_t d) {
  int64_t rows = shape->rows, heads = shape->heads, capacity = shape->capacity;
  layer_norm(&layer->self_norm, x, normed, rows, d, shape->norm_eps);
  int failed = linear(&layer->q, normed, q, rows, shape->threads) | linear(&layer->k, normed, k, rows, shape->threads) |
               linear(&layer->v, normed, v, rows, shape->threads);
  if (failed) return failed;
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t h = 0; h < heads; ++h) {
      int64_t slot = ((r * heads + h) * capacity + shape->position) * HEAD_DIM;
      memcpy(layer->keys + slot, k + (r * heads + h) * HEAD_DIM, HEAD_DIM * sizeof(float));
      memcpy(layer->values + slot, v + (r * heads + h) * HEAD_DIM, HEAD_DIM * sizeof(float));
    }
  failed = few_query_self_attention(q, layer->keys, layer->values, shape->origins, shape->self_bias,
                                    shape->self_bias_rows, attended, rows, heads, capacity, shape->position + 1,
                                    1.0f / sqrtf(HEAD_DIM), shape->threads);
  if (failed || (failed = linear(&layer->out, attended, projected, rows, shape->threads))) return failed;
  add_into(x, projected, rows * d);
  return 0;
}

/* to (docs, b, a, 64) = from (docs, a, b, 64) with its middle two dimensions swapped. */
static void swap_middle(const float* from, float* to, int64_t docs, int64_t a, int64_t b) {
  for (int64_t doc = 0; doc < docs; ++doc)
    for (int64_t i = 0; i < a; ++i)
      for (int64_t j = 0; j < b; ++j)
        memcpy(to + ((doc * b + j) * a + i) * HEAD_DIM, from + ((doc * a + i) * b + j) * HEAD_DIM,
               HEAD_DIM * sizeof(float));
}

/* x (rows, d) += out_proj(cross-attention(LayerNorm(x))): rows = docs x groups, a document's rows (its beams) one
 * after another, reading its keys/values once. */
static int cross_attention_block(const step_layer* layer, const step_shape* shape, float* x, float* normed, float* q,
                                 float* by_head, float* attended, float* projected, int64_t d) {
  int64_t rows = shape->rows, heads = shape->heads, docs = shape->docs, groups = rows / docs;
  layer_norm(&layer->cross_norm, x, normed, rows, d, shape->norm_eps);
  int failed = linear(&layer->cross_q, normed, q, rows, shape->threads);
  if (failed) return failed;
  swap_middle(q, by_head, docs, groups, heads); /* (docs, heads, groups, 64): a document's rows, as the kernel reads */
  float scale = 1.0f / sqrtf(HEAD_DIM);
  failed = shape->cross_bfloat16
               ? few_query_attention_bfloat16(by_head, layer->cross_keys, layer->cross_values, shape->cross_bias, q,
                                              docs, heads, groups, shape->source_length, shape->key_stride, scale,
                                              shape->threads)
               : few_query_attention_float32(by_head, layer->cross_keys, layer->cross_values, shape->cross_bias, q,
                                             docs, heads, groups, shape->source_length, shape->key_stride, scale,
                                             shape->threads);
  if (failed) return failed;
  swap_middle(q, attended, docs, heads, groups); /* the context back to (docs, groups, heads, 64) */
  if ((failed = linear(&layer->cross_out, attended, projected, rows, shape->threads))) return failed;
  add_into(x, projected, rows * d);
  return 0;
}

/* x (rows, d) += fc2(activation(fc1(LayerNorm(x)))). */
static int feed_forward_block(const step_layer* layer, const step_shape* shape, float* x, float* normed, float* hidden,
                              float* projected, int64_t d) {
  layer_norm(&layer->final_norm, x, normed, shape->rows, d, shape->norm_eps);
  int failed = linear(&layer->fc1, normed, hidden, shape->rows, shape->threads);
  if (failed) return failed;
  bias_activation(hidden, NULL, shape->rows, shape->ffn, shape->activation, 1);
  if ((failed = linear(&layer->fc2, hidden, projected, shape->rows, shape->threads))) return failed;
  add_into(x, projected, shape->rows * d);
  return 0;
}

/* The entry point: x (rows, heads * 64) fp32, the step's input to the first layer, becomes the last layer's output
 * (before the decoder's final LayerNorm). Returns 0; 1 when the sizes are out of range (rows 1 to 40, docs dividing
 * rows, the feed-forward width a multiple of LANES); 3 when out of memory; a kernel's refusal otherwise. */
int decoder_step(const step_layer* layers, int64_t count, const step_shape* shape, float* x) {
  int64_t rows = shape->rows, d = shape->heads * HEAD_DIM;
  if (rows < 1 || rows > MAX_ROWS || shape->docs < 1 || rows % shape->docs != 0 || shape->ffn % LANES != 0 ||
      shape->position < 0 || shape->position >= shape->capacity)
    return 1;
  int64_t widest = shape->ffn > d ? shape->ffn : d;
  float* scratch = aligned_alloc(64, (size_t)(rows * (6 * d + widest)) * sizeof(float));
  if (!scratch) return 3;
  float *normed = scratch, *q = normed + rows * d, *k = q + rows * d, *v = k + rows * d, *attended = v + rows * d,
        *projected = attended + rows * d, *wide = projected + rows * d;
  int failed = 0;
  for (int64_t i = 0; i < count && !failed; ++i) {
    const step_layer* layer = layers + i;
    failed = self_attention_block(layer, shape, x, normed, q, k, v, attended, projected, d);
    if (!failed && shape->cross_attention)
      failed = cross_attention_block(layer, shape, x, normed, q, k, attended, projected, d);
    if (!failed) failed = feed_forward_block(layer, shape, x, normed, wide, projected, d);
  }
  free(scratch);
  return failed;
}
