/*
 * Single-precision exp and log written as straight-line code (no calls, no branches), so that loops over
 * arrays vectorise (SSE, AVX2, AVX-512, NEON). The polynomials are the minimax ones of Cephes' expf and
 * logf (S. L. Moshier, Cephes Math Library, 1984-1992): range reduction by powers of two, then a
 * polynomial on the reduced argument; about 1 ulp. Special values follow C99: exp(NaN) = NaN, exp(+inf) =
 * +inf, exp(-inf) = 0; log(x < 0) = NaN, log(0) = -inf, log(+inf) = +inf. Results below the smallest
 * normal float (exp(x) for x < -87.34) are flushed to 0.
 */
#ifndef BILEVEL_VECTOR_MATH_H
#define BILEVEL_VECTOR_MATH_H
#include <math.h>
#include <stdint.h>
#include <string.h>

static inline __attribute__((always_inline)) float bits_to_float(int32_t i) {
  float f;
  memcpy(&f, &i, sizeof f);
  return f;
}

static inline __attribute__((always_inline)) int32_t float_to_bits(float f) {
  int32_t i;
  memcpy(&i, &f, sizeof i);
  return i;
}

static inline __attribute__((always_inline)) float vm_exp(float x) {
  const float hi = 88.72283905206835f, lo = -87.33654475055310f;
  float xc = x > hi ? hi : x;
  xc = xc < lo ? lo : xc;
  /* n = round(x / ln 2) by the 1.5·2^23 trick (no call, so the loop vectorises). */
  const float n = (xc * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
  float r = xc - n * 0.693359375f;
  r = r + n * 2.12194440e-4f;
  float p = 1.9875691500E-4f;
  p = p * r + 1.3981999507E-3f;
  p = p * r + 8.3334519073E-3f;
  p = p * r + 4.1665795894E-2f;
  p = p * r + 1.6666665459E-1f;
  p = p * r + 5.0000001201E-1f;
  p = p * r * r + r + 1.0f;
  /* 2^n for n in [-126, 128]: at n = 128 (x near hi) build 2^127 and double it. */
  const int32_t ni = (int32_t)n;
  const int32_t nh = ni > 127 ? 127 : ni;
  float y = p * bits_to_float((nh + 127) << 23);
  y = ni > 127 ? y * 2.0f : y;
  y = x > hi ? INFINITY : y;
  y = x < lo ? 0.0f : y;
  return x != x ? x : y;
}

static inline __attribute__((always_inline)) float vm_log(float x) {
  /* Subnormals: scale by 2^23 first. */
  const int sub = x < 1.17549435e-38f;
  const float xs = sub ? x * 8388608.0f : x;
  const int32_t bits = float_to_bits(xs);
  int32_t e = ((bits >> 23) & 0xff) - 126;
  float m = bits_to_float((bits & 0x007fffff) | 0x3f000000); /* m in [0.5, 1) */
  e = sub ? e - 23 : e;
  /* m in [sqrt(1/2), sqrt(2)): if m < sqrt(1/2), use 2m and e - 1. */
  const int small = m < 0.707106781186547524f;
  e = small ? e - 1 : e;
  m = small ? m + m : m;
  const float f = m - 1.0f;
  const float z = f * f;
  float y = 7.0376836292E-2f;
  y = y * f - 1.1514610310E-1f;
  y = y * f + 1.1676998740E-1f;
  y = y * f - 1.2420140846E-1f;
  y = y * f + 1.4249322787E-1f;
  y = y * f - 1.6668057665E-1f;
  y = y * f + 2.0000714765E-1f;
  y = y * f - 2.4999993993E-1f;
  y = y * f + 3.3333331174E-1f;
  y = y * f * z;
  const float fe = (float)e;
  y = y - 2.12194440e-4f * fe;
  y = y - 0.5f * z;
  float r = f + y + 0.693359375f * fe;
  r = x == INFINITY ? INFINITY : r;
  r = x == 0.0f ? -INFINITY : r;
  r = x < 0.0f ? NAN : r;
  return x != x ? x : r;
}
#endif
