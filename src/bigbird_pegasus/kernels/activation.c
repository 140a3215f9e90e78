/* A linear layer's bias and activation applied to its output in place, in one pass: GELU (erf), its tanh
 * approximation, or ReLU. The encoder's feed-forward on CPUs where oneDNN's product with a GELU post-op is slower
 * than a product and then this (modeling/linear.py), and the whole-step kernel's feed-forward (decoder_step.c).
 * GCC/Clang vector extensions; OpenMP over the rows. Compiled by build.py. */
#include <stdint.h>

#include "kernels.h"
#include "vectors.h"

static inline lanes absolute(lanes x) { return (lanes)((words)x & 0x7fffffff); }
static inline lanes with_sign_of(lanes magnitude, lanes sign) {
  return (lanes)((words)magnitude | ((words)sign & (int32_t)0x80000000));
}

/* erf(x) within 1.5e-7 (Abramowitz and Stegun 7.1.26: 1 - (a1 t + ... + a5 t^5) e^(-x^2), t = 1 / (1 + p |x|)). */
static inline lanes erf_lanes(lanes x) {
  lanes a = absolute(x);
  lanes t = 1.0f / (1.0f + 0.3275911f * a);
  lanes poly = ((((1.061405429f * t - 1.453152027f) * t + 1.421413741f) * t - 0.284496736f) * t + 0.254829592f) * t;
  return with_sign_of(1.0f - poly * exp_nonpositive(-(a * a)), x);
}

/* tanh(x) = sign(x) (1 - e^(-2|x|)) / (1 + e^(-2|x|)). */
static inline lanes tanh_lanes(lanes x) {
  lanes e = exp_nonpositive(-2.0f * absolute(x));
  return with_sign_of((1.0f - e) / (1.0f + e), x);
}

/* A row of n values (a multiple of LANES) in place: activation(row + bias), bias (n,) or NULL. */
static void activate_row(float* row, const float* bias, int64_t n, int activation) {
  for (int64_t i = 0; i < n; i += LANES) {
    lanes v = load_float32(row + i), y;
    if (bias) v += load_float32(bias + i);
    if (activation == GELU) {
      y = 0.5f * v * (1.0f + erf_lanes(v * 0.70710678118654752f));
    } else if (activation == GELU_TANH) {
      y = 0.5f * v * (1.0f + tanh_lanes(0.79788456080286536f * (v + 0.044715f * v * v * v)));
    } else {
      y = larger(v, (lanes){0});
    }
    *(lanes*)(row + i) = y;
  }
}

/* The entry point: y (rows, n) = activation(y + bias) in place, bias (n,) fp32 or NULL, n a multiple of LANES, the
 * rows split between the threads. Returns 0, or 1 when n or the activation is out of range. */
int bias_activation(float* y, const float* bias, int64_t rows, int64_t n, int activation, int threads) {
  if (n % LANES != 0 || activation < GELU || activation > RELU) return 1;
#pragma omp parallel for num_threads(threads) schedule(static)
  for (int64_t r = 0; r < rows; ++r) activate_row(y + r * n, bias, n, activation);
  return 0;
}
