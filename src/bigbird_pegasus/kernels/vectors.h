/* The vector types and the math the C kernels share: LANES floats per vector (16 with AVX-512, 8 elsewhere), loads
 * and stores of fp32 and bf16, a float in every lane, the larger of two vectors, e^x for x <= 0, a vector's largest
 * value and its sum.
 * GCC/Clang vector extensions. */
#ifndef BIGBIRD_PEGASUS_VECTORS_H
#define BIGBIRD_PEGASUS_VECTORS_H
#include <stdint.h>

#if defined(__AVX512F__)
#define LANES 16
#else /* AVX2 or NEON: 16 registers of 8 lanes */
#define LANES 8
#endif
typedef float lanes __attribute__((vector_size(4 * LANES), aligned(4)));
typedef int32_t words __attribute__((vector_size(4 * LANES)));
typedef uint16_t halves __attribute__((vector_size(2 * LANES), aligned(2)));
typedef uint32_t unsigned_words __attribute__((vector_size(4 * LANES)));

static inline lanes load_float32(const float* p) { return *(const lanes*)p; }
/* x in every lane (x + -0 is x exactly, so the compiler broadcasts; x + 0 would be computed first, -0 turned +0). */
static inline lanes splat(float x) { return x + -(lanes){0}; }
static inline float float32(const float* p) { return *p; }
static inline void store_float32(float* p, lanes x) { *(lanes*)p = x; }

/* bf16 is the top half of an fp32: widen and shift; stored rounded to the nearest (ties to even), NaN kept NaN. */
static inline lanes load_bfloat16(const uint16_t* p) {
  unsigned_words wide = __builtin_convertvector(*(const halves*)p, unsigned_words) << 16;
  return (lanes)wide;
}
static inline float bfloat16(const uint16_t* p) {
  union { uint32_t bits; float value; } wide = {(uint32_t)*p << 16};
  return wide.value;
}
static inline void store_bfloat16(uint16_t* p, lanes x) {
  unsigned_words bits = (unsigned_words)x;
  unsigned_words rounded = (bits + 0x7FFFu + ((bits >> 16) & 1u)) >> 16;
  unsigned_words nan = (unsigned_words)(x != x);
  *(halves*)p = __builtin_convertvector((rounded & ~nan) | (((bits >> 16) | 0x40u) & nan), halves);
}

static inline lanes larger(lanes a, lanes b) {
  words a_larger = a > b;
  return (lanes)(((words)a & a_larger) | ((words)b & ~a_larger));
}

/* e^x for x <= 0 (a softmax's x - max), within 2 ulp; 0 below -87 (e^x there is under FLT_MIN): x = n ln 2 + f,
 * |f| <= ln 2 / 2, e^f by Cephes' polynomial, 2^n put into the exponent bits. */
static inline lanes exp_nonpositive(lanes x) {
  const lanes round = (lanes){0} + 12582912.0f; /* 1.5 * 2^23: adding it rounds to an integer */
  words kept = x >= -87.0f;
  x = larger(x, (lanes){0} - 87.0f);
  lanes n = (x * 1.44269504088896341f + round) - round;
  lanes f = x - n * 0.693359375f + n * 2.12194440e-4f;
  lanes y = 1.9875691500e-4f * f + 1.3981999507e-3f;
  y = y * f + 8.3334519073e-3f;
  y = y * f + 4.1665795894e-2f;
  y = y * f + 1.6666665459e-1f;
  y = y * f + 5.0000001201e-1f;
  y = y * f * f + f + 1.0f;
  words two_to_n = (__builtin_convertvector(n, words) + 127) << 23;
  return (lanes)((words)(y * (lanes)two_to_n) & kept);
}

static inline float lane_max(lanes a) {
  float most = a[0];
  for (int i = 1; i < LANES; ++i) most = a[i] > most ? a[i] : most;
  return most;
}

static inline float lane_sum(lanes a) {
  float sum = 0.0f;
  for (int i = 0; i < LANES; ++i) sum += a[i];
  return sum;
}

#endif
