/* The entry points of the kernels that decoder_step.c calls (each defined in its own file). */
#ifndef BIGBIRD_PEGASUS_KERNELS_H
#define BIGBIRD_PEGASUS_KERNELS_H
#include <stdint.h>

int few_row_linear(const float* x, const float* w, const float* bias, float* y, int64_t rows, int64_t n, int64_t k,
                   int threads);
int few_row_int8_linear(const float* x, const int8_t* w, const float* w_scale, const int32_t* w_sums,
                        const float* bias, float* y, int64_t rows, int64_t n, int64_t k, int threads);
int few_query_attention_float32(const float* q, const float* k, const float* v, const float* bias, float* out,
                                int64_t docs, int64_t heads, int64_t rows, int64_t s, int64_t key_stride, float scale,
                                int threads);
int few_query_attention_bfloat16(const float* q, const uint16_t* k, const uint16_t* v, const float* bias, float* out,
                                 int64_t docs, int64_t heads, int64_t rows, int64_t s, int64_t key_stride,
                                 float scale, int threads);
int few_query_self_attention(const float* q, const float* k, const float* v, const int64_t* origins,
                             const float* bias, int64_t bias_rows, float* out, int64_t rows, int64_t heads,
                             int64_t capacity, int64_t length, float scale, int threads);
/* The activations of bias_activation (activation.c): the config's names map to these in kernels/decoder_step.py. */
enum activation { GELU = 0, GELU_TANH = 1, RELU = 2 };
int bias_activation(float* y, const float* bias, int64_t rows, int64_t n, int activation, int threads);
#endif
