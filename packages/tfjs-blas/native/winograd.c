/*
 * Winograd F(2×2, 3×3) convolutions (declared in winograd.h). With the 4×4 input block d of one channel, the
 * 3×3 filter g of one input and output channel, and
 *
 *   Bᵀ = [1  0 −1  0]     G = [1    0    0 ]     Aᵀ = [1 1  1  0]
 *        [0  1  1  0]         [1/2  1/2  1/2]          [0 1 −1 −1]
 *        [0 −1  1  0]         [1/2 −1/2  1/2]
 *        [0  1  0 −1]         [0    0    1 ]
 *
 * the 2×2 output block is Aᵀ [Σ_c (G g Gᵀ) ⊙ (Bᵀ d B)] A. The 16 element-wise products summed over the
 * channels are 16 matrix products: for each ξ of the 4×4 positions, M_ξ [tiles, O] = V_ξ [tiles, C] · U_ξ [C, O],
 * with U = G g Gᵀ (the filter, transformed once per call) and V = Bᵀ d B (the input, per tile).
 *
 * The work is cut into tasks of consecutive output tiles; each task transforms its tiles' inputs into a
 * scratch of its own thread, runs the 16 products with a one-threaded sgemm and transforms the results into
 * the output, so that no phase waits for another thread and the transformed input never leaves the cache
 * hierarchy's upper levels for long.
 *
 * Special values: the transforms subtract inputs from each other, so an infinity in d would give ∞ − ∞ = NaN
 * where a direct convolution gives ±∞. Each tile's transformed input is checked (v·0 is NaN only for a NaN or
 * infinite v); the tiles where it fails are computed directly from x and w. A filter with a NaN or an infinity
 * is refused (return value 1) and left to the caller's direct method.
 */
#include "winograd.h"
#include "thread-pool.h"
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#ifdef BILEVEL_ACCELERATE
#include <Accelerate/Accelerate.h>
#else
#include <cblas.h>
#endif

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
#define WINOGRAD_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define WINOGRAD_CLONES
#endif

/* The products of a task are [tiles, C]·[C, O]: the scratch holds V (16·tiles·C floats) and M (16·tiles·O). A
 * few hundred rows keep the sgemm near its full speed and the repacking of U_ξ (C·O floats per product) small
 * beside the product's 2·tiles·C·O flops; at least two tasks per thread when the layer has the tiles. */
#define WINOGRAD_MAX_TILES 256
#define WINOGRAD_MIN_TILES 32

size_t winograd_tile_count(const WinogradShape* s) {
  const size_t tiles = (size_t)(s->batch * ((s->outH + 1) / 2) * ((s->outW + 1) / 2));
  const size_t threads = (size_t)pool_threads();
  size_t per = WINOGRAD_MAX_TILES;
  const size_t balanced = (tiles + 2 * threads - 1) / (2 * threads);
  if (per > balanced) per = balanced;
  if (per < WINOGRAD_MIN_TILES) per = WINOGRAD_MIN_TILES;
  return per < tiles ? per : (tiles ? tiles : 1);
}

/* ---------------------------------------------------------------------------------------------- */
/* Filter transform: U[ξ][c][o] = (G g Gᵀ)[i][j], ξ = 4i + j, g[a][b] = w[a][b][c][o]. The transforms are
 * written out in scalars so that the compiler vectorises them over the channels. */

typedef struct {
  const WinogradShape* s;
  const float* w;
  float* u;
  atomic_int nonfinite;
} FilterTransform;

/* One row of G·g (a 1×3 row r) times Gᵀ: the four entries r0, (r0 + r1 + r2)/2, (r0 − r1 + r2)/2, r2. */
#define G_ROW(u, plane, o, i, r0, r1, r2)                      \
  do {                                                         \
    (u)[(size_t)(4 * (i) + 0) * (plane) + (o)] = (r0);         \
    (u)[(size_t)(4 * (i) + 1) * (plane) + (o)] = 0.5f * ((r0) + (r1) + (r2)); \
    (u)[(size_t)(4 * (i) + 2) * (plane) + (o)] = 0.5f * ((r0) - (r1) + (r2)); \
    (u)[(size_t)(4 * (i) + 3) * (plane) + (o)] = (r2);         \
  } while (0)

WINOGRAD_CLONES
static int filter_transform_channel(const float* restrict g, float* restrict u, size_t O, size_t plane) {
  int nonfinite = 0;
  /* The streams never overlap (distinct ξ planes, or rows of different pixels). */
#pragma GCC ivdep
  for (size_t o = 0; o < O; o++) {
    const float k00 = g[0 * plane + o], k01 = g[1 * plane + o], k02 = g[2 * plane + o];
    const float k10 = g[3 * plane + o], k11 = g[4 * plane + o], k12 = g[5 * plane + o];
    const float k20 = g[6 * plane + o], k21 = g[7 * plane + o], k22 = g[8 * plane + o];
    const float z = (k00 + k01 + k02 + k10 + k11 + k12 + k20 + k21 + k22) * 0.f;
    nonfinite |= z != z;
    /* Rows of G·g: g0, (g0 + g1 + g2)/2, (g0 − g1 + g2)/2, g2. */
    const float a0 = 0.5f * (k00 + k10 + k20), a1 = 0.5f * (k01 + k11 + k21), a2 = 0.5f * (k02 + k12 + k22);
    const float b0 = 0.5f * (k00 - k10 + k20), b1 = 0.5f * (k01 - k11 + k21), b2 = 0.5f * (k02 - k12 + k22);
    G_ROW(u, plane, o, 0, k00, k01, k02);
    G_ROW(u, plane, o, 1, a0, a1, a2);
    G_ROW(u, plane, o, 2, b0, b1, b2);
    G_ROW(u, plane, o, 3, k20, k21, k22);
  }
  return nonfinite;
}

static void filter_transform_range(void* ctx, size_t c0, size_t c1) {
  FilterTransform* t = (FilterTransform*)ctx;
  const size_t C = (size_t)t->s->C, O = (size_t)t->s->O, plane = C * O;
  int nonfinite = 0;
  for (size_t c = c0; c < c1; c++) nonfinite |= filter_transform_channel(t->w + c * O, t->u + c * O, O, plane);
  if (nonfinite) atomic_store(&t->nonfinite, 1);
}

/* ---------------------------------------------------------------------------------------------- */
/* Input transform of one tile: v[ξ·stride + c] = (Bᵀ d B)[i][j] with d[a][b] = p[4a + b][c]. Returns whether
 * every transformed value is finite. Bᵀ·(x0, x1, x2, x3) = (x0 − x2, x1 + x2, x2 − x1, x1 − x3). */
#define BT_ROW(v, stride, c, i, x0, x1, x2, x3)                                     \
  do {                                                                            \
    const float v0_ = (x0) - (x2), v1_ = (x1) + (x2), v2_ = (x2) - (x1), v3_ = (x1) - (x3); \
    (v)[(size_t)(4 * (i) + 0) * (stride) + (c)] = v0_;                            \
    (v)[(size_t)(4 * (i) + 1) * (stride) + (c)] = v1_;                            \
    (v)[(size_t)(4 * (i) + 2) * (stride) + (c)] = v2_;                            \
    (v)[(size_t)(4 * (i) + 3) * (stride) + (c)] = v3_;                            \
    sum += v0_ + v1_ + v2_ + v3_;                                                 \
  } while (0)

WINOGRAD_CLONES
static int input_transform(const float* const* p, size_t C, float* restrict v, size_t stride) {
  const float *restrict p0 = p[0], *restrict p1 = p[1], *restrict p2 = p[2], *restrict p3 = p[3];
  const float *restrict p4 = p[4], *restrict p5 = p[5], *restrict p6 = p[6], *restrict p7 = p[7];
  const float *restrict p8 = p[8], *restrict p9 = p[9], *restrict p10 = p[10], *restrict p11 = p[11];
  const float *restrict p12 = p[12], *restrict p13 = p[13], *restrict p14 = p[14], *restrict p15 = p[15];
  int nonfinite = 0;
  /* The streams never overlap (distinct ξ planes, or rows of different pixels). */
#pragma GCC ivdep
  for (size_t c = 0; c < C; c++) {
    /* Rows of Bᵀ·d (d's rows 0-3 are p0-3, p4-7, p8-11, p12-15), then each row times B. */
    const float e00 = p0[c] - p8[c], e01 = p1[c] - p9[c], e02 = p2[c] - p10[c], e03 = p3[c] - p11[c];
    const float e10 = p4[c] + p8[c], e11 = p5[c] + p9[c], e12 = p6[c] + p10[c], e13 = p7[c] + p11[c];
    const float e20 = p8[c] - p4[c], e21 = p9[c] - p5[c], e22 = p10[c] - p6[c], e23 = p11[c] - p7[c];
    const float e30 = p4[c] - p12[c], e31 = p5[c] - p13[c], e32 = p6[c] - p14[c], e33 = p7[c] - p15[c];
    float sum = 0.f;
    BT_ROW(v, stride, c, 0, e00, e01, e02, e03);
    BT_ROW(v, stride, c, 1, e10, e11, e12, e13);
    BT_ROW(v, stride, c, 2, e20, e21, e22, e23);
    BT_ROW(v, stride, c, 3, e30, e31, e32, e33);
    const float z = sum * 0.f;
    nonfinite |= z != z;
  }
  return !nonfinite;
}

/* Output transform of one tile: q[2i + j][o] = (Aᵀ m A)[i][j] with m[ξ] = mt[ξ·stride + o];
 * Aᵀ·(x0, x1, x2, x3) = (x0 + x1 + x2, x1 − x2 − x3). */
WINOGRAD_CLONES
static void output_transform(const float* restrict mt, size_t stride, size_t O, float* restrict q0,
                             float* restrict q1, float* restrict q2, float* restrict q3) {
  const float *restrict m0 = mt, *restrict m1 = mt + stride, *restrict m2 = mt + 2 * stride;
  const float *restrict m3 = mt + 3 * stride, *restrict m4 = mt + 4 * stride, *restrict m5 = mt + 5 * stride;
  const float *restrict m6 = mt + 6 * stride, *restrict m7 = mt + 7 * stride, *restrict m8 = mt + 8 * stride;
  const float *restrict m9 = mt + 9 * stride, *restrict m10 = mt + 10 * stride, *restrict m11 = mt + 11 * stride;
  const float *restrict m12 = mt + 12 * stride, *restrict m13 = mt + 13 * stride;
  const float *restrict m14 = mt + 14 * stride, *restrict m15 = mt + 15 * stride;
  /* The streams never overlap (distinct ξ planes, or rows of different pixels). */
#pragma GCC ivdep
  for (size_t o = 0; o < O; o++) {
    /* Rows of Aᵀ·m (m's rows are m0-3, m4-7, m8-11, m12-15), then each row times A. */
    const float a0 = m0[o] + m4[o] + m8[o], a1 = m1[o] + m5[o] + m9[o];
    const float a2 = m2[o] + m6[o] + m10[o], a3 = m3[o] + m7[o] + m11[o];
    const float b0 = m4[o] - m8[o] - m12[o], b1 = m5[o] - m9[o] - m13[o];
    const float b2 = m6[o] - m10[o] - m14[o], b3 = m7[o] - m11[o] - m15[o];
    q0[o] = a0 + a1 + a2;
    q1[o] = a1 - a2 - a3;
    q2[o] = b0 + b1 + b2;
    q3[o] = b1 - b2 - b3;
  }
}

/* One output pixel computed directly (the tiles with special values). */
static void direct_pixel(const WinogradShape* s, const float* x, const float* w, int64_t n, int64_t oy, int64_t ox,
                         float* y) {
  const size_t C = (size_t)s->C, O = (size_t)s->O;
  memset(y, 0, O * sizeof(float));
  for (int64_t ky = 0; ky < 3; ky++) {
    const int64_t iy = oy - s->padTop + ky;
    if (iy < 0 || iy >= s->inH) continue;
    for (int64_t kx = 0; kx < 3; kx++) {
      const int64_t ix = ox - s->padLeft + kx;
      if (ix < 0 || ix >= s->inW) continue;
      const float* xp = x + (size_t)((n * s->inH + iy) * s->inW + ix) * C;
      const float* wp = w + (size_t)(ky * 3 + kx) * C * O;
      for (size_t c = 0; c < C; c++) {
        const float xv = xp[c];
        const float* wr = wp + c * O;
        for (size_t o = 0; o < O; o++) y[o] += xv * wr[o];
      }
    }
  }
}

/* The 16 input rows (C floats each) of tile `tile`, zeros outside the image. */
static void tile_inputs(const WinogradShape* s, const float* x, int64_t tile, const float* zeros, const float** p) {
  const int64_t tH = (s->outH + 1) / 2, tW = (s->outW + 1) / 2, n = tile / (tH * tW), rem = tile % (tH * tW);
  const int64_t iy0 = 2 * (rem / tW) - s->padTop, ix0 = 2 * (rem % tW) - s->padLeft;
  for (int a = 0; a < 4; a++)
    for (int b = 0; b < 4; b++) {
      const int64_t iy = iy0 + a, ix = ix0 + b;
      p[4 * a + b] = iy < 0 || iy >= s->inH || ix < 0 || ix >= s->inW
                         ? zeros
                         : x + (size_t)((n * s->inH + iy) * s->inW + ix) * (size_t)s->C;
    }
}

typedef struct {
  const WinogradShape* s;
  const float *x, *w, *u;
  float* y;
  size_t per_task, tiles;
  winograd_scratch_fn scratch;
  atomic_int failed;
} Tasks;

static void winograd_one_task(Tasks* t, size_t task) {
  const WinogradShape* s = t->s;
  const size_t C = (size_t)s->C, O = (size_t)s->O, tc = t->per_task;
  const int64_t tH = (s->outH + 1) / 2, tW = (s->outW + 1) / 2;
  const size_t first = task * tc, count = first + tc < t->tiles ? tc : t->tiles - first;
  float* buf = t->scratch(16 * tc * (C + O) + C + 4 * O + tc);
  if (!buf) {
    atomic_store(&t->failed, 1);
    return;
  }
  float *v = buf, *m = v + 16 * tc * C, *zeros = m + 16 * tc * O, *dump = zeros + C, *bad = dump + 4 * O;
  memset(zeros, 0, C * sizeof(float));
  for (size_t k = 0; k < count; k++) {
    const float* p[16];
    tile_inputs(s, t->x, (int64_t)(first + k), zeros, p);
    bad[k] = input_transform(p, C, v + k * C, tc * C) ? 0.f : 1.f;
  }
  for (size_t xi = 0; xi < 16; xi++)
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)count, (int)O, (int)C, 1.f, v + xi * tc * C, (int)C,
                t->u + xi * C * O, (int)O, 0.f, m + xi * tc * O, (int)O);
  for (size_t k = 0; k < count; k++) {
    const int64_t tile = (int64_t)(first + k), n = tile / (tH * tW), rem = tile % (tH * tW);
    const int64_t oy0 = 2 * (rem / tW), ox0 = 2 * (rem % tW);
    float* q[4];
    for (int i = 0; i < 2; i++)
      for (int j = 0; j < 2; j++) {
        const int64_t oy = oy0 + i, ox = ox0 + j;
        q[2 * i + j] = oy < s->outH && ox < s->outW ? t->y + (size_t)((n * s->outH + oy) * s->outW + ox) * O : NULL;
      }
    if (bad[k] != 0.f) {
      for (int i = 0; i < 4; i++)
        if (q[i]) direct_pixel(s, t->x, t->w, n, oy0 + i / 2, ox0 + i % 2, q[i]);
      continue;
    }
    for (int i = 0; i < 4; i++)
      if (!q[i]) q[i] = dump + (size_t)i * O;
    output_transform(m + k * O, tc * O, O, q[0], q[1], q[2], q[3]);
  }
}

/* Output rows [b, e) (of batch·outH) computed directly (a filter with a NaN or an infinity). */
typedef struct {
  const WinogradShape* s;
  const float *x, *w;
  float* y;
} DirectRows;

static void direct_rows(void* ctx, size_t b, size_t e) {
  const DirectRows* d = (const DirectRows*)ctx;
  const WinogradShape* s = d->s;
  for (size_t r = b; r < e; r++) {
    const int64_t n = (int64_t)r / s->outH, oy = (int64_t)r % s->outH;
    for (int64_t ox = 0; ox < s->outW; ox++)
      direct_pixel(s, d->x, d->w, n, oy, ox, d->y + (r * (size_t)s->outW + (size_t)ox) * (size_t)s->O);
  }
}

/* Tasks [b, e) (one at a time when the pool hands them out, all of them on a one-thread pool). */
static void winograd_tasks(void* ctx, size_t b, size_t e) {
  for (size_t task = b; task < e; task++) winograd_one_task((Tasks*)ctx, task);
}

int winograd_conv3x3(const WinogradShape* s, const float* x, const float* w, float* y, winograd_scratch_fn scratch) {
  const size_t C = (size_t)s->C, O = (size_t)s->O;
  float* u = (float*)malloc(16 * C * O * sizeof(float));
  if (!u) return -1;
  FilterTransform ft = {s, w, u, 0};
  size_t grain = 4096 / (O ? O : 1);
  pool_parallel_for(C, grain ? grain : 1, filter_transform_range, &ft);
  if (atomic_load(&ft.nonfinite)) {
    free(u);
    DirectRows d = {s, x, w, y};
    pool_parallel_for((size_t)(s->batch * s->outH), 1, direct_rows, &d);
    return 0;
  }
  Tasks t = {s, x, w, u, y, winograd_tile_count(s), (size_t)(s->batch * ((s->outH + 1) / 2) * ((s->outW + 1) / 2)),
             scratch, 0};
  pool_parallel_tasks((t.tiles + t.per_task - 1) / t.per_task, winograd_tasks, &t);
  free(u);
  return atomic_load(&t.failed) ? -1 : 0;
}

/* ---------------------------------------------------------------------------------------------- */
/* Filter gradient. With L = Σ dy·y and y's tile Aᵀ [Σ_c U ⊙ V] A, ∂L/∂U_ξ = Σ_tiles V_ξᵀ·(A dy_tile Aᵀ)_ξ (one
 * product [C, tiles]·[tiles, O] per ξ, summed over the tiles) and ∂L/∂g = Gᵀ (∂L/∂U) G: the adjoint of the
 * forward map, so the same 2.25-fold saving. Each thread sums its tasks' products into a partial sum of its
 * own; the partial sums are added in slot order and transformed back at the end. */

/* dy transform of one tile: w[ξ·stride + o] = (A e Aᵀ)[i][j], e the 2×2 block q0 q1 / q2 q3;
 * A·(y0, y1) = (y0, y0 + y1, y0 − y1, −y1). Returns whether every value is finite. */
#define A_ROW(w, stride, o, i, y0, y1)                    \
  do {                                                    \
    const float w0_ = (y0), w1_ = (y0) + (y1), w2_ = (y0) - (y1), w3_ = -(y1); \
    (w)[(size_t)(4 * (i) + 0) * (stride) + (o)] = w0_;    \
    (w)[(size_t)(4 * (i) + 1) * (stride) + (o)] = w1_;    \
    (w)[(size_t)(4 * (i) + 2) * (stride) + (o)] = w2_;    \
    (w)[(size_t)(4 * (i) + 3) * (stride) + (o)] = w3_;    \
    sum += w0_ + w1_ + w2_ + w3_;                         \
  } while (0)

WINOGRAD_CLONES
static int dy_transform(const float* restrict q0, const float* restrict q1, const float* restrict q2,
                        const float* restrict q3, size_t O, float* restrict w, size_t stride) {
  int nonfinite = 0;
  /* The streams never overlap (distinct ξ planes). */
#pragma GCC ivdep
  for (size_t o = 0; o < O; o++) {
    /* Columns of A·e: (e0b, e0b + e1b, e0b − e1b, −e1b) for b = 0, 1; then each row times Aᵀ. */
    const float a0 = q0[o], a1 = q1[o], c0 = q2[o], c1 = q3[o];
    float sum = 0.f;
    A_ROW(w, stride, o, 0, a0, a1);
    A_ROW(w, stride, o, 1, a0 + c0, a1 + c1);
    A_ROW(w, stride, o, 2, a0 - c0, a1 - c1);
    A_ROW(w, stride, o, 3, -c0, -c1);
    const float z = sum * 0.f;
    nonfinite |= z != z;
  }
  return !nonfinite;
}

#define WINOGRAD_MAX_PARTIALS 64

typedef struct {
  const WinogradShape* s;
  const float *x, *dy;
  size_t per_task, tiles;
  winograd_scratch_fn scratch;
  float* partials[WINOGRAD_MAX_PARTIALS];
  atomic_size_t next_slot;
  atomic_int failed, nonfinite;
} GradTasks;

/* Tasks [b, e) into a partial sum of its own thread. */
static void gradient_range(void* ctx, size_t b, size_t e) {
  GradTasks* t = (GradTasks*)ctx;
  const WinogradShape* s = t->s;
  const size_t C = (size_t)s->C, O = (size_t)s->O, tc = t->per_task;
  const int64_t tH = (s->outH + 1) / 2, tW = (s->outW + 1) / 2;
  const size_t slot = atomic_fetch_add(&t->next_slot, 1);
  float* buf = t->scratch(16 * tc * (C + O) + C + O);
  float* acc = slot < WINOGRAD_MAX_PARTIALS ? (float*)malloc(16 * C * O * sizeof(float)) : NULL;
  if (!buf || !acc) {
    free(acc);
    atomic_store(&t->failed, 1);
    return;
  }
  t->partials[slot] = acc;
  float *v = buf, *w = v + 16 * tc * C, *zeros = w + 16 * tc * O, *zero_out = zeros + C;
  memset(zeros, 0, (C + O) * sizeof(float));
  int finite = 1;
  for (size_t task = b; task < e && finite; task++) {
    const size_t first = task * tc, count = first + tc < t->tiles ? tc : t->tiles - first;
    for (size_t k = 0; k < count && finite; k++) {
      const int64_t tile = (int64_t)(first + k), n = tile / (tH * tW), rem = tile % (tH * tW);
      const int64_t oy0 = 2 * (rem / tW), ox0 = 2 * (rem % tW);
      const float* p[16];
      tile_inputs(s, t->x, tile, zeros, p);
      finite &= input_transform(p, C, v + k * C, tc * C);
      const float* q[4];
      for (int i = 0; i < 4; i++) {
        const int64_t oy = oy0 + i / 2, ox = ox0 + i % 2;
        q[i] = oy < s->outH && ox < s->outW ? t->dy + (size_t)((n * s->outH + oy) * s->outW + ox) * O : zero_out;
      }
      finite &= dy_transform(q[0], q[1], q[2], q[3], O, w + k * O, tc * O);
    }
    if (!finite) break;
    for (size_t xi = 0; xi < 16; xi++)
      cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)C, (int)O, (int)count, 1.f, v + xi * tc * C, (int)C,
                  w + xi * tc * O, (int)O, task == b ? 0.f : 1.f, acc + xi * C * O, (int)O);
  }
  if (!finite) atomic_store(&t->nonfinite, 1);
}

typedef struct {
  float* sum;
  float* const* partials;
  size_t count;
} PartialSums;

static void add_partial_sums(void* ctx, size_t b, size_t e) {
  const PartialSums* p = (const PartialSums*)ctx;
  for (size_t s = 1; s < p->count; s++) {
    const float* src = p->partials[s];
    for (size_t i = b; i < e; i++) p->sum[i] += src[i];
  }
}

/* ∂g = Gᵀ dU G per (c, o); Gᵀ·(u0, u1, u2, u3) = (u0 + (u1 + u2)/2, (u1 − u2)/2, (u1 + u2)/2 + u3). */
typedef struct {
  const WinogradShape* s;
  const float* du;
  float* dw;
} GradOutput;

WINOGRAD_CLONES
static void gradient_output_channel(const float* restrict du, float* restrict dw, size_t O, size_t plane) {
#pragma GCC ivdep
  for (size_t o = 0; o < O; o++) {
    float r[3][4];
    for (int j = 0; j < 4; j++) {
      const float u0 = du[(size_t)j * plane + o], u1 = du[(size_t)(4 + j) * plane + o];
      const float u2 = du[(size_t)(8 + j) * plane + o], u3 = du[(size_t)(12 + j) * plane + o];
      r[0][j] = u0 + 0.5f * (u1 + u2);
      r[1][j] = 0.5f * (u1 - u2);
      r[2][j] = 0.5f * (u1 + u2) + u3;
    }
    for (int a = 0; a < 3; a++) {
      dw[(size_t)(3 * a + 0) * plane + o] = r[a][0] + 0.5f * (r[a][1] + r[a][2]);
      dw[(size_t)(3 * a + 1) * plane + o] = 0.5f * (r[a][1] - r[a][2]);
      dw[(size_t)(3 * a + 2) * plane + o] = 0.5f * (r[a][1] + r[a][2]) + r[a][3];
    }
  }
}

static void gradient_output_range(void* ctx, size_t c0, size_t c1) {
  const GradOutput* g = (const GradOutput*)ctx;
  const size_t C = (size_t)g->s->C, O = (size_t)g->s->O;
  for (size_t c = c0; c < c1; c++) gradient_output_channel(g->du + c * O, g->dw + c * O, O, C * O);
}

/* The filter gradient computed directly, input channels [c0, c1) (when x or dy holds a NaN or an infinity:
 * only products of pixels inside the image, so that the zero padding times ∞ adds no NaN). */
typedef struct {
  const WinogradShape* s;
  const float *x, *dy;
  float* dw;
} DirectGradient;

static void direct_gradient_range(void* ctx, size_t c0, size_t c1) {
  const DirectGradient* d = (const DirectGradient*)ctx;
  const WinogradShape* s = d->s;
  const size_t C = (size_t)s->C, O = (size_t)s->O;
  for (size_t c = c0; c < c1; c++) {
    for (int64_t k = 0; k < 9; k++) memset(d->dw + ((size_t)k * C + c) * O, 0, O * sizeof(float));
    for (int64_t n = 0; n < s->batch; n++)
      for (int64_t oy = 0; oy < s->outH; oy++)
        for (int64_t ox = 0; ox < s->outW; ox++) {
          const float* g = d->dy + (size_t)((n * s->outH + oy) * s->outW + ox) * O;
          for (int64_t ky = 0; ky < 3; ky++) {
            const int64_t iy = oy - s->padTop + ky;
            if (iy < 0 || iy >= s->inH) continue;
            for (int64_t kx = 0; kx < 3; kx++) {
              const int64_t ix = ox - s->padLeft + kx;
              if (ix < 0 || ix >= s->inW) continue;
              const float xv = d->x[(size_t)((n * s->inH + iy) * s->inW + ix) * C + c];
              float* out = d->dw + ((size_t)(ky * 3 + kx) * C + c) * O;
              for (size_t o = 0; o < O; o++) out[o] += xv * g[o];
            }
          }
        }
  }
}

int winograd_filter_gradient3x3(const WinogradShape* s, const float* x, const float* dy, float* dw,
                                winograd_scratch_fn scratch) {
  const size_t C = (size_t)s->C, O = (size_t)s->O;
  GradTasks t;
  memset(&t, 0, sizeof t);
  t.s = s, t.x = x, t.dy = dy, t.scratch = scratch;
  t.per_task = winograd_tile_count(s);
  t.tiles = (size_t)(s->batch * ((s->outH + 1) / 2) * ((s->outW + 1) / 2));
  atomic_store(&t.next_slot, 0);
  atomic_store(&t.failed, 0);
  atomic_store(&t.nonfinite, 0);
  pool_parallel_for((t.tiles + t.per_task - 1) / t.per_task, 1, gradient_range, &t);
  size_t count = atomic_load(&t.next_slot);
  if (count > WINOGRAD_MAX_PARTIALS) count = WINOGRAD_MAX_PARTIALS;
  int rc = atomic_load(&t.failed) ? -1 : atomic_load(&t.nonfinite) ? 1 : 0;
  if (rc == 0) {
    /* Partial sums in slot order: slot numbers follow the order in which the threads started. */
    PartialSums p = {t.partials[0], t.partials, count};
    if (count > 1) pool_parallel_for(16 * C * O, 32768, add_partial_sums, &p);
    GradOutput g = {s, t.partials[0], dw};
    const size_t grain = 4096 / (O ? O : 1);
    pool_parallel_for(C, grain ? grain : 1, gradient_output_range, &g);
  }
  for (size_t i = 0; i < count; i++) free(t.partials[i]);
  if (rc == 1) {
    DirectGradient d = {s, x, dy, dw};
    pool_parallel_for(C, 1, direct_gradient_range, &d);
    rc = 0;
  }
  return rc;
}
