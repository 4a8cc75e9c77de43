/*
 * Kernels of the convolution networks around the convolutions: LeakyReLU (at the end of this file) and the
 * per-channel kernels of batch normalization, on activations viewed as x [groups, rows, channels] (NHWC with
 * the batch split into groups, each with its own statistics):
 *
 *   channelMoments(x, groups, out):        out [2, groups, c] = the mean and the biased variance of each
 *                                           group's channel (one pass, shifted sums in double precision);
 *   channelSums(u, v, groups, out):        out [2, groups, c] = Σ u and Σ u·v over each group's rows
 *                                           (v null: Σ u and Σ u²);
 *   channelAffine(x, a, z, s, b, groups, out): out = x·a + z·s + b with a, s, b [groups, c] per group and
 *                                           channel (z, s null: out = x·a + b).
 *
 * Forward batch norm is one moments pass and one affine pass, and its gradient one sums pass and one affine
 * pass with two inputs; the composite form (reductions and broadcasting element-wise ops) makes five and
 * eight full-size passes. Reductions are threaded by parts of consecutive rows, each with its own
 * accumulators, added in part order, so results do not depend on which thread ran which part.
 */
#include <node_api.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conv-net.h"
#include "napi-args.h"
#include "thread-pool.h"

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && !defined(BILEVEL_ACCELERATE)
#define BN_VECTOR_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define BN_VECTOR_CLONES
#endif

/* Smallest element count per thread (as the element-wise kernels). */
#define BN_GRAIN 32768

/* The geometry shared by the kernels: x holds groups · rows · c floats. */
typedef struct {
  size_t groups, rows, c;
} Shape;

/* Splits the groups · rows rows into parts: one per thread when the data is large, else one. */
static size_t part_count(const Shape* s) {
  const size_t total = s->groups * s->rows * s->c;
  size_t parts = (size_t)pool_threads();
  const size_t all_rows = s->groups * s->rows;
  if (parts > all_rows) parts = all_rows;
  if (parts < 2 || total < 4 * BN_GRAIN) parts = 1;
  return parts;
}

/* ---------------------------------------------------------------------------------------------- */
/* Reductions: each part accumulates, for the groups its rows touch, two sums per channel in double. */

typedef struct {
  Shape s;
  int kind; /* 0: moments (x − shift, (x − shift)²), 1: sums (u, u·v), 2: sums (u, u²) */
  const float* u;
  const float* v;
  const float* shift; /* [groups, c]: the group's first row (moments) */
  size_t parts;
  double* acc; /* [parts][2][groups][c] */
} RedTask;

BN_VECTOR_CLONES
static void red_part(void* ctx, size_t p, size_t p_end) {
  (void)p_end;
  const RedTask* t = (const RedTask*)ctx;
  const size_t all = t->s.groups * t->s.rows, c = t->s.c, gc = t->s.groups * c;
  const size_t r0 = all * p / t->parts, r1 = all * (p + 1) / t->parts;
  double* s1 = t->acc + p * 2 * gc;
  double* s2 = s1 + gc;
  memset(s1, 0, 2 * gc * sizeof(double));
  for (size_t r = r0; r < r1; r++) {
    const size_t g = r / t->s.rows;
    const float* u = t->u + r * c;
    double* a1 = s1 + g * c;
    double* a2 = s2 + g * c;
    if (t->kind == 0) {
      const float* sh = t->shift + g * c;
      for (size_t k = 0; k < c; k++) {
        const double d = (double)u[k] - (double)sh[k];
        a1[k] += d;
        a2[k] += d * d;
      }
    } else if (t->kind == 1) {
      const float* v = t->v + r * c;
      for (size_t k = 0; k < c; k++) {
        a1[k] += (double)u[k];
        a2[k] += (double)u[k] * (double)v[k];
      }
    } else {
      for (size_t k = 0; k < c; k++) {
        a1[k] += (double)u[k];
        a2[k] += (double)u[k] * (double)u[k];
      }
    }
  }
}

/* Runs the reduction and leaves the part-ordered totals in acc[0 .. 2·groups·c). Returns -1 when out of memory. */
static int reduce_rows(RedTask* t) {
  const size_t gc = t->s.groups * t->s.c;
  t->parts = part_count(&t->s);
  t->acc = (double*)malloc((t->parts * 2 * gc + 1) * sizeof(double));
  if (!t->acc) return -1;
  if (t->s.groups * t->s.rows == 0) {
    memset(t->acc, 0, 2 * gc * sizeof(double));
    return 0;
  }
  if (t->parts == 1) red_part(t, 0, 1);
  else pool_parallel_tasks(t->parts, red_part, t);
  for (size_t p = 1; p < t->parts; p++) {
    const double* src = t->acc + p * 2 * gc;
    for (size_t i = 0; i < 2 * gc; i++) t->acc[i] += src[i];
  }
  return 0;
}

static int read_shape(napi_env env, const char* fn, napi_value groups_arg, size_t lx, size_t lc, Shape* s) {
  int64_t groups;
  if (arg_int(env, groups_arg, fn, "groups", 1, &groups)) return -1;
  if (lc % (size_t)groups != 0) return throw_error(env, fn, "the per-channel arrays do not split into the groups");
  s->groups = (size_t)groups;
  s->c = lc / (size_t)groups;
  if (s->c == 0) {
    if (lx != 0) return throw_error(env, fn, "x is not empty but has no channels");
    s->rows = 0;
    return 0;
  }
  if (lx % (s->groups * s->c) != 0) return throw_error(env, fn, "x does not split into groups × rows × channels");
  s->rows = lx / (s->groups * s->c);
  return 0;
}

/* channelMoments(x, groups, out): out [2, groups, c] = mean, biased variance (0 for groups without rows, as tfjs' Mean). */
static napi_value js_channel_moments(napi_env env, napi_callback_info info) {
  const char* fn = "channelMoments";
  napi_value argv[3];
  float *x, *out;
  size_t lx, lo;
  if (get_args(env, info, 3, argv, fn)) return NULL;
  if (arg_f32(env, argv[0], fn, "x", 0, &x, &lx) || arg_f32(env, argv[2], fn, "out", 0, &out, &lo)) return NULL;
  if (lo % 2 != 0) return throw_error(env, fn, "out must hold 2 · groups · channels floats"), NULL;
  Shape s;
  if (read_shape(env, fn, argv[1], lx, lo / 2, &s)) return NULL;
  const size_t gc = s.groups * s.c;
  if (gc == 0) return NULL;
  if (s.rows == 0) {
    /* As tfjs' Mean of an empty axis: 0. */
    memset(out, 0, 2 * gc * sizeof(float));
    return NULL;
  }
  /* Shifted by each group's first row, so that the variance does not lose digits to a large mean. */
  float* shift = (float*)malloc(gc * sizeof(float) + 1);
  if (!shift) return throw_error(env, fn, "out of memory"), NULL;
  for (size_t g = 0; g < s.groups; g++)
    for (size_t k = 0; k < s.c; k++) shift[g * s.c + k] = x[g * s.rows * s.c + k];
  for (size_t i = 0; i < gc; i++)
    if (!isfinite(shift[i])) shift[i] = 0.f;
  RedTask t = {s, 0, x, NULL, shift, 0, NULL};
  if (reduce_rows(&t)) {
    free(shift);
    return throw_error(env, fn, "out of memory"), NULL;
  }
  const double m = (double)s.rows;
  for (size_t i = 0; i < gc; i++) {
    const double d = t.acc[i] / m;
    const double var = t.acc[gc + i] / m - d * d;
    out[i] = (float)((double)shift[i] + d);
    out[gc + i] = (float)(var > 0 || var != var ? var : 0.0);
  }
  free(t.acc);
  free(shift);
  return NULL;
}

/* channelSums(u, v, groups, out): out [2, groups, c] = Σ u, Σ u·v over each group's rows (v null: Σ u, Σ u²). */
static napi_value js_channel_sums(napi_env env, napi_callback_info info) {
  const char* fn = "channelSums";
  napi_value argv[4];
  float *u, *v, *out;
  size_t lu, lv, lo;
  if (get_args(env, info, 4, argv, fn)) return NULL;
  if (arg_f32(env, argv[0], fn, "u", 0, &u, &lu) || arg_f32(env, argv[1], fn, "v", 1, &v, &lv) ||
      arg_f32(env, argv[3], fn, "out", 0, &out, &lo))
    return NULL;
  if (lo % 2 != 0) return throw_error(env, fn, "out must hold 2 · groups · channels floats"), NULL;
  if (v && lv != lu) return throw_error(env, fn, "u and v must have the same size"), NULL;
  Shape s;
  if (read_shape(env, fn, argv[2], lu, lo / 2, &s)) return NULL;
  const size_t gc = s.groups * s.c;
  if (gc == 0) return NULL;
  RedTask t = {s, v ? 1 : 2, u, v, NULL, 0, NULL};
  if (reduce_rows(&t)) return throw_error(env, fn, "out of memory"), NULL;
  for (size_t i = 0; i < 2 * gc; i++) out[i] = (float)t.acc[i];
  free(t.acc);
  return NULL;
}

/* ---------------------------------------------------------------------------------------------- */

typedef struct {
  Shape s;
  const float *x, *a, *z, *sc, *b;
  float* out;
} AffineTask;

BN_VECTOR_CLONES
static void affine_rows(void* ctx, size_t r0, size_t r1) {
  const AffineTask* t = (const AffineTask*)ctx;
  const size_t c = t->s.c;
  for (size_t r = r0; r < r1; r++) {
    const size_t g = r / t->s.rows;
    const float* x = t->x + r * c;
    const float* a = t->a + g * c;
    const float* b = t->b + g * c;
    float* o = t->out + r * c;
    if (t->z) {
      const float* z = t->z + r * c;
      const float* s = t->sc + g * c;
      for (size_t k = 0; k < c; k++) o[k] = x[k] * a[k] + z[k] * s[k] + b[k];
    } else {
      for (size_t k = 0; k < c; k++) o[k] = x[k] * a[k] + b[k];
    }
  }
}

/* channelAffine(x, a, z, s, b, groups, out): out = x·a + z·s + b (z and s both null: out = x·a + b). */
static napi_value js_channel_affine(napi_env env, napi_callback_info info) {
  const char* fn = "channelAffine";
  napi_value argv[7];
  float *x, *a, *z, *sc, *b, *out;
  size_t lx, la, lz, ls, lb, lo;
  if (get_args(env, info, 7, argv, fn)) return NULL;
  if (arg_f32(env, argv[0], fn, "x", 0, &x, &lx) || arg_f32(env, argv[1], fn, "a", 0, &a, &la) ||
      arg_f32(env, argv[2], fn, "z", 1, &z, &lz) || arg_f32(env, argv[3], fn, "s", 1, &sc, &ls) ||
      arg_f32(env, argv[4], fn, "b", 0, &b, &lb) || arg_f32(env, argv[6], fn, "out", 0, &out, &lo))
    return NULL;
  if ((z == NULL) != (sc == NULL)) return throw_error(env, fn, "z and s must both be given or both be null"), NULL;
  if (lb != la || (sc && ls != la)) return throw_error(env, fn, "a, s and b must have the same size"), NULL;
  if (lo != lx || (z && lz != lx)) return throw_error(env, fn, "x, z and out must have the same size"), NULL;
  Shape s;
  if (read_shape(env, fn, argv[5], lx, la, &s)) return NULL;
  if (lx == 0) return NULL;
  AffineTask t = {s, x, a, z, sc, b, out};
  size_t grain = BN_GRAIN / s.c;
  if (grain < 1) grain = 1;
  pool_parallel_for(s.groups * s.rows, grain, affine_rows, &t);
  return NULL;
}

/* ---------------------------------------------------------------------------------------------- */
/* LeakyReLU and its gradient, each one pass (the composite forms x·step(x, α) and dy·step(x, α) make two):
 *   leakyRelu(x, null, alpha, out):  out = x for x > 0, else α·x (NaN stays NaN);
 *   leakyRelu(x, dy, alpha, out):    out = dy for x > 0, else α·dy (NaN where x is NaN),
 * the float32 values of x·step(x, α) and dy·step(x, α). */

typedef struct {
  const float *x, *dy;
  float alpha;
  float* out;
} LeakyTask;

BN_VECTOR_CLONES
static void leaky_range(void* ctx, size_t b, size_t e) {
  const LeakyTask* t = (const LeakyTask*)ctx;
  const float a = t->alpha;
  const float* x = t->x;
  float* o = t->out;
  if (t->dy) {
    const float* dy = t->dy;
    for (size_t i = b; i < e; i++) o[i] = x[i] > 0.f ? dy[i] : (x[i] != x[i] ? x[i] : dy[i] * a);
  } else {
    for (size_t i = b; i < e; i++) o[i] = x[i] > 0.f ? x[i] : x[i] * a;
  }
}

static napi_value js_leaky_relu(napi_env env, napi_callback_info info) {
  const char* fn = "leakyRelu";
  napi_value argv[4];
  float *x, *dy, *out;
  size_t lx, ldy, lo;
  double alpha;
  if (get_args(env, info, 4, argv, fn)) return NULL;
  if (arg_f32(env, argv[0], fn, "x", 0, &x, &lx) || arg_f32(env, argv[1], fn, "dy", 1, &dy, &ldy) ||
      arg_f32(env, argv[3], fn, "out", 0, &out, &lo))
    return NULL;
  napi_valuetype vt;
  if (napi_typeof(env, argv[2], &vt) != napi_ok || vt != napi_number || napi_get_value_double(env, argv[2], &alpha) != napi_ok)
    return throw_error(env, fn, "alpha must be a number"), NULL;
  if (lo != lx || (dy && ldy != lx)) return throw_error(env, fn, "x, dy and out must have the same size"), NULL;
  LeakyTask t = {x, dy, (float)alpha, out};
  pool_parallel_for(lx, BN_GRAIN, leaky_range, &t);
  return NULL;
}

void bilevel_conv_net_register(napi_env env, napi_value exports) {
  const napi_property_descriptor props[] = {
      {"channelMoments", NULL, js_channel_moments, NULL, NULL, NULL, napi_enumerable, NULL},
      {"channelSums", NULL, js_channel_sums, NULL, NULL, NULL, napi_enumerable, NULL},
      {"channelAffine", NULL, js_channel_affine, NULL, NULL, NULL, napi_enumerable, NULL},
      {"leakyRelu", NULL, js_leaky_relu, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
}
