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
 *
 * F(4×4, 3×3) (s->m = 4) works the same way on 6×6 input blocks, 36 products per channel pair for a 4×4 output
 * block (2.25 per output instead of 4), with the interpolation points 0, ±1, ±2, ∞:
 *
 *   Bᵀ = [4  0 −5  0  1  0]     G = [ 1/4     0     0  ]     Aᵀ = [1  1  1  1  1  0]
 *        [0 −4 −4  1  1  0]         [−1/6  −1/6  −1/6 ]          [0  1 −1  2 −2  0]
 *        [0  4 −4 −1  1  0]         [−1/6   1/6  −1/6 ]          [0  1  1  4  4  0]
 *        [0 −2 −1  2  1  0]         [ 1/24  1/12  1/6 ]          [0  1 −1  8 −8  1]
 *        [0  2 −1 −2  1  0]         [ 1/24 −1/12  1/6 ]
 *        [0  4  0 −5  0  1]         [ 0     0     1  ]
 *
 * (checked in float64: Aᵀ[(G g Gᵀ) ⊙ (Bᵀ d B)]A equals the 4×4 correlation of d and g to 4e-14, and Gᵀ[(Bᵀ d B) ⊙
 * (A e Aᵀ)]G the filter gradient). Its float32 error is larger: the transforms' entries reach 8 and 5, so the
 * products' terms are larger than the results they cancel to.
 *
 * When a layer has few tiles (the 10×10 layers of a ResNet-12: 90 tiles of 4×4 for 10 images) tasks of
 * consecutive tiles would run products only a few dozen rows tall that each repack U_ξ; there the three phases
 * run one after the other instead (all tiles' input transforms, then one product per ξ over all tiles as a
 * task, then the output transforms), see winograd_phased.
 */
#include "winograd.h"
#include "thread-pool.h"
#include <pthread.h>
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

/* The products of a task are [tiles, C]·[C, O]: the scratch holds V (n·tiles·C floats, n = 16 or 36) and M
 * (n·tiles·O). A few hundred rows keep the sgemm near its full speed and the repacking of U_ξ (C·O floats per
 * product) small beside the product's 2·tiles·C·O flops; at least two tasks per thread when the layer has the
 * tiles. F(4×4)'s tiles cover four times the outputs and take 36/16 times the scratch, hence fewer per task. */
#define WINOGRAD_MAX_TILES 256
#define WINOGRAD_MIN_TILES 32
#define WINOGRAD4_MAX_TILES 128
#define WINOGRAD4_MIN_TILES 16

/* Output tiles of the layer: m×m blocks of outputs (cut by the image's edge). */
static size_t tile_total(const WinogradShape* s) {
  const int64_t m = s->m;
  return (size_t)(s->batch * ((s->outH + m - 1) / m) * ((s->outW + m - 1) / m));
}

size_t winograd_tile_count(const WinogradShape* s) {
  const size_t tiles = tile_total(s);
  const size_t threads = (size_t)pool_threads();
  size_t per = s->m == 4 ? WINOGRAD4_MAX_TILES : WINOGRAD_MAX_TILES;
  const size_t least = s->m == 4 ? WINOGRAD4_MIN_TILES : WINOGRAD_MIN_TILES;
  const size_t balanced = (tiles + 2 * threads - 1) / (2 * threads);
  if (per > balanced) per = balanced;
  if (per < least) per = least;
  return per < tiles ? per : (tiles ? tiles : 1);
}

/* ---------------------------------------------------------------------------------------------- */
/* Buffers of the size of a layer (the transformed filter U, the filter gradient's partial sums, the phased
 * path's transformed inputs and products: up to 36·640·640 floats, 59 MB) are kept between calls in a few slots
 * instead of being allocated per call: a fresh allocation of that size is a fresh mapping whose pages are
 * faulted in and zeroed by the kernel at every call. Freed by winograd_release. */
#define BUFFER_SLOTS 4
typedef struct {
  float* data;
  size_t cap;
} Buffer;
static pthread_mutex_t buffer_lock = PTHREAD_MUTEX_INITIALIZER;
static Buffer buffer_slots[BUFFER_SLOTS];

/* A buffer of at least `floats` floats (the smallest kept one that fits, else a new one); data NULL when memory
 * ran out. */
static Buffer buffer_take(size_t floats) {
  Buffer b = {NULL, 0};
  pthread_mutex_lock(&buffer_lock);
  int best = -1;
  for (int i = 0; i < BUFFER_SLOTS; i++)
    if (buffer_slots[i].data && buffer_slots[i].cap >= floats &&
        (best < 0 || buffer_slots[i].cap < buffer_slots[best].cap))
      best = i;
  if (best >= 0) {
    b = buffer_slots[best];
    buffer_slots[best].data = NULL;
    buffer_slots[best].cap = 0;
  }
  pthread_mutex_unlock(&buffer_lock);
  if (!b.data) {
    b.data = (float*)malloc((floats ? floats : 1) * sizeof(float));
    b.cap = b.data ? floats : 0;
  }
  return b;
}

/* Keeps a buffer for later calls (in a free slot, or in place of a smaller kept one), or frees it. */
static void buffer_give(Buffer b) {
  if (!b.data) return;
  pthread_mutex_lock(&buffer_lock);
  int slot = -1;
  for (int i = 0; i < BUFFER_SLOTS && slot < 0; i++)
    if (!buffer_slots[i].data) slot = i;
  if (slot < 0)
    for (int i = 0; i < BUFFER_SLOTS; i++)
      if (buffer_slots[i].cap < b.cap && (slot < 0 || buffer_slots[i].cap < buffer_slots[slot].cap)) slot = i;
  Buffer old = {NULL, 0};
  if (slot >= 0) {
    old = buffer_slots[slot];
    buffer_slots[slot] = b;
  } else {
    old = b;
  }
  pthread_mutex_unlock(&buffer_lock);
  free(old.data);
}

void winograd_release(void) {
  pthread_mutex_lock(&buffer_lock);
  for (int i = 0; i < BUFFER_SLOTS; i++) {
    free(buffer_slots[i].data);
    buffer_slots[i].data = NULL;
    buffer_slots[i].cap = 0;
  }
  pthread_mutex_unlock(&buffer_lock);
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

/* G·(x0, x1, x2) for F(4×4): (x0/4, −(x0 + x1 + x2)/6, −(x0 − x1 + x2)/6, x0/24 + x1/12 + x2/6,
 * x0/24 − x1/12 + x2/6, x2). */
#define G6(x0, x1, x2, y)                                                     \
  do {                                                                        \
    const float s02_ = (x0) + (x2), h_ = (1.f / 24.f) * (x0) + (1.f / 6.f) * (x2), k_ = (1.f / 12.f) * (x1); \
    (y)[0] = 0.25f * (x0);                                                    \
    (y)[1] = (-1.f / 6.f) * (s02_ + (x1));                                    \
    (y)[2] = (-1.f / 6.f) * (s02_ - (x1));                                    \
    (y)[3] = h_ + k_;                                                         \
    (y)[4] = h_ - k_;                                                         \
    (y)[5] = (x2);                                                            \
  } while (0)

/* F(4×4): U[ξ][c][o] = (G g Gᵀ)[i][j], ξ = 6i + j. */
WINOGRAD_CLONES
static int filter_transform_channel4(const float* restrict g, float* restrict u, size_t O, size_t plane) {
  int nonfinite = 0;
  /* The streams never overlap (distinct ξ planes, or rows of different pixels). */
#pragma GCC ivdep
  for (size_t o = 0; o < O; o++) {
    float k[9], col[3][6], r[6];
    float z = 0.f;
    #pragma GCC unroll 36
    for (int i = 0; i < 9; i++) {
      k[i] = g[(size_t)i * plane + o];
      z += k[i];
    }
    z *= 0.f;
    nonfinite |= z != z;
    /* Columns of G·g (6 × 3), then each row times Gᵀ. */
    #pragma GCC unroll 36
    for (int b = 0; b < 3; b++) G6(k[b], k[3 + b], k[6 + b], col[b]);
    #pragma GCC unroll 36
    for (int i = 0; i < 6; i++) {
      G6(col[0][i], col[1][i], col[2][i], r);
      #pragma GCC unroll 36
      for (int j = 0; j < 6; j++) u[(size_t)(6 * i + j) * plane + o] = r[j];
    }
  }
  return nonfinite;
}

static void filter_transform_range(void* ctx, size_t c0, size_t c1) {
  FilterTransform* t = (FilterTransform*)ctx;
  const size_t C = (size_t)t->s->C, O = (size_t)t->s->O, plane = C * O;
  int nonfinite = 0;
  for (size_t c = c0; c < c1; c++)
    nonfinite |= t->s->m == 4 ? filter_transform_channel4(t->w + c * O, t->u + c * O, O, plane)
                              : filter_transform_channel(t->w + c * O, t->u + c * O, O, plane);
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

/* Bᵀ·(x0, …, x5) for F(4×4): (4x0 − 5x2 + x4, (x3 + x4) − 4(x1 + x2), (x4 − x3) + 4(x1 − x2),
 * (x4 − x2) + 2(x3 − x1), (x4 − x2) − 2(x3 − x1), 4x1 − 5x3 + x5). */
#define BT6(x0, x1, x2, x3, x4, x5, y)                                        \
  do {                                                                        \
    const float s12_ = (x1) + (x2), d12_ = (x1) - (x2), s34_ = (x3) + (x4), d43_ = (x4) - (x3); \
    const float d42_ = (x4) - (x2), d31_ = (x3) - (x1);                      \
    (y)[0] = 4.f * (x0) - 5.f * (x2) + (x4);                                  \
    (y)[1] = s34_ - 4.f * s12_;                                               \
    (y)[2] = d43_ + 4.f * d12_;                                               \
    (y)[3] = d42_ + 2.f * d31_;                                               \
    (y)[4] = d42_ - 2.f * d31_;                                               \
    (y)[5] = 4.f * (x1) - 5.f * (x3) + (x5);                                  \
  } while (0)

/* F(4×4) input transform of one tile: v[ξ·stride + c] = (Bᵀ d B)[i][j], ξ = 6i + j, d[a][b] = p[6a + b][c].
 * Returns whether every transformed value is finite. */
WINOGRAD_CLONES
static int input_transform4(const float* const* p, size_t C, float* restrict v, size_t stride) {
  const float* q[36];
  for (int i = 0; i < 36; i++) q[i] = p[i];
  int nonfinite = 0;
  /* The streams never overlap (distinct ξ planes, or rows of different pixels). */
#pragma GCC ivdep
  for (size_t c = 0; c < C; c++) {
    float col[6][6], r[6];
    float sum = 0.f;
    /* Columns of Bᵀ·d, then each row times B. */
    #pragma GCC unroll 36
    for (int b = 0; b < 6; b++)
      BT6(q[b][c], q[6 + b][c], q[12 + b][c], q[18 + b][c], q[24 + b][c], q[30 + b][c], col[b]);
    #pragma GCC unroll 36
    for (int i = 0; i < 6; i++) {
      BT6(col[0][i], col[1][i], col[2][i], col[3][i], col[4][i], col[5][i], r);
      #pragma GCC unroll 36
      for (int j = 0; j < 6; j++) {
        v[(size_t)(6 * i + j) * stride + c] = r[j];
        sum += r[j];
      }
    }
    const float z = sum * 0.f;
    nonfinite |= z != z;
  }
  return !nonfinite;
}

/* Aᵀ·(x0, …, x5) for F(4×4): (x0 + (x1 + x2) + (x3 + x4), (x1 − x2) + 2(x3 − x4), (x1 + x2) + 4(x3 + x4),
 * (x1 − x2) + 8(x3 − x4) + x5). */
#define AT6(x0, x1, x2, x3, x4, x5, y)                                        \
  do {                                                                        \
    const float s12_ = (x1) + (x2), d12_ = (x1) - (x2), s34_ = (x3) + (x4), d34_ = (x3) - (x4); \
    (y)[0] = (x0) + s12_ + s34_;                                              \
    (y)[1] = d12_ + 2.f * d34_;                                               \
    (y)[2] = s12_ + 4.f * s34_;                                               \
    (y)[3] = d12_ + 8.f * d34_ + (x5);                                        \
  } while (0)

/* F(4×4) output transform of one tile: q[4i + j][o] = (Aᵀ m A)[i][j] with m[ξ] = mt[ξ·stride + o]. */
WINOGRAD_CLONES
static void output_transform4(const float* restrict mt, size_t stride, size_t O, float* const* qs) {
  float* q[16];
  for (int i = 0; i < 16; i++) q[i] = qs[i];
  /* The streams never overlap (distinct ξ planes, or rows of different pixels). */
#pragma GCC ivdep
  for (size_t o = 0; o < O; o++) {
    float col[6][4], r[4];
    /* Columns of Aᵀ·m (4 × 6), then each row times A. */
    #pragma GCC unroll 36
    for (int b = 0; b < 6; b++)
      AT6(mt[(size_t)b * stride + o], mt[(size_t)(6 + b) * stride + o], mt[(size_t)(12 + b) * stride + o],
          mt[(size_t)(18 + b) * stride + o], mt[(size_t)(24 + b) * stride + o], mt[(size_t)(30 + b) * stride + o],
          col[b]);
    #pragma GCC unroll 36
    for (int i = 0; i < 4; i++) {
      AT6(col[0][i], col[1][i], col[2][i], col[3][i], col[4][i], col[5][i], r);
      #pragma GCC unroll 36
      for (int j = 0; j < 4; j++) q[4 * i + j][o] = r[j];
    }
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

/* The (m + 2)² input rows (C floats each) of tile `tile`, zeros outside the image. */
static void tile_inputs(const WinogradShape* s, const float* x, int64_t tile, const float* zeros, const float** p) {
  const int64_t m = s->m, a = m + 2, tH = (s->outH + m - 1) / m, tW = (s->outW + m - 1) / m;
  const int64_t n = tile / (tH * tW), rem = tile % (tH * tW);
  const int64_t iy0 = m * (rem / tW) - s->padTop, ix0 = m * (rem % tW) - s->padLeft;
  for (int64_t i = 0; i < a; i++)
    for (int64_t j = 0; j < a; j++) {
      const int64_t iy = iy0 + i, ix = ix0 + j;
      p[a * i + j] = iy < 0 || iy >= s->inH || ix < 0 || ix >= s->inW
                         ? zeros
                         : x + (size_t)((n * s->inH + iy) * s->inW + ix) * (size_t)s->C;
    }
}

/* The input transform of the shape's variant: v[ξ·stride + c] for the tile whose input rows are p. */
static int transform_input(const WinogradShape* s, const float* const* p, float* v, size_t stride) {
  return s->m == 4 ? input_transform4(p, (size_t)s->C, v, stride) : input_transform(p, (size_t)s->C, v, stride);
}

/* The m² output rows (O floats each) of tile `tile`, NULL outside the image, and the tile's first pixel. */
static void tile_outputs(const WinogradShape* s, float* y, int64_t tile, float** q, int64_t* n, int64_t* oy0,
                         int64_t* ox0) {
  const int64_t m = s->m, tH = (s->outH + m - 1) / m, tW = (s->outW + m - 1) / m, rem = tile % (tH * tW);
  *n = tile / (tH * tW), *oy0 = m * (rem / tW), *ox0 = m * (rem % tW);
  for (int64_t i = 0; i < m; i++)
    for (int64_t j = 0; j < m; j++) {
      const int64_t oy = *oy0 + i, ox = *ox0 + j;
      q[m * i + j] = oy < s->outH && ox < s->outW ? y + (size_t)((*n * s->outH + oy) * s->outW + ox) * (size_t)s->O
                                                  : NULL;
    }
}

/* The outputs of one tile: from its products mt[ξ·stride + o] by the output transform, or directly from x and w
 * when its transformed input was not finite. `dump` (m²·O floats) takes the rows outside the image. */
static void finish_tile(const WinogradShape* s, const float* x, const float* w, float* y, int64_t tile, int bad,
                        const float* mt, size_t stride, float* dump) {
  const int64_t m = s->m;
  const size_t O = (size_t)s->O;
  float* q[16];
  int64_t n, oy0, ox0;
  tile_outputs(s, y, tile, q, &n, &oy0, &ox0);
  if (bad) {
    for (int64_t i = 0; i < m * m; i++)
      if (q[i]) direct_pixel(s, x, w, n, oy0 + i / m, ox0 + i % m, q[i]);
    return;
  }
  for (int64_t i = 0; i < m * m; i++)
    if (!q[i]) q[i] = dump + (size_t)i * O;
  if (m == 4)
    output_transform4(mt, stride, O, q);
  else
    output_transform(mt, stride, O, q[0], q[1], q[2], q[3]);
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
  const size_t C = (size_t)s->C, O = (size_t)s->O, tc = t->per_task, mm = (size_t)(s->m * s->m);
  const size_t nx = (size_t)((s->m + 2) * (s->m + 2));
  const size_t first = task * tc, count = first + tc < t->tiles ? tc : t->tiles - first;
  float* buf = t->scratch(nx * tc * (C + O) + C + mm * O + tc);
  if (!buf) {
    atomic_store(&t->failed, 1);
    return;
  }
  float *v = buf, *m = v + nx * tc * C, *zeros = m + nx * tc * O, *dump = zeros + C, *bad = dump + mm * O;
  memset(zeros, 0, C * sizeof(float));
  for (size_t k = 0; k < count; k++) {
    const float* p[36];
    tile_inputs(s, t->x, (int64_t)(first + k), zeros, p);
    bad[k] = transform_input(s, p, v + k * C, tc * C) ? 0.f : 1.f;
  }
  for (size_t xi = 0; xi < nx; xi++)
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)count, (int)O, (int)C, 1.f, v + xi * tc * C, (int)C,
                t->u + xi * C * O, (int)O, 0.f, m + xi * tc * O, (int)O);
  for (size_t k = 0; k < count; k++)
    finish_tile(s, t->x, t->w, t->y, (int64_t)(first + k), bad[k] != 0.f, m + k * O, tc * O, dump);
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

/* The phased path (few tiles): V [n][tiles][C] and M [n][tiles][O] for all tiles at once; the input transforms
 * over ranges of tiles, then each ξ's product [tiles, C]·[C, O] as a task of its own (U_ξ packed once), then the
 * output transforms over ranges of tiles. Measured on the ResNet-12 layers (2 cores, CPU ms per call, forward /
 * input gradient / filter gradient, two alternated rounds): F(4×4) at 10×10, 640 → 640 (90 tiles) 39–58 / 51–75
 * / 32–53 phased against 86–92 / 100–108 / 75–77 by tasks, at 21×21, 320 → 320 (360 tiles) 30–40 / 33–43 / 31–42
 * against 42–52 / 51–54 / 39–51; F(2×2) at 10×10 (250 tiles) 32–51 / 44–67 / 30–51 against 49–60 / 65–67 /
 * 52–56; but at 42×42 (1,210 tiles of F(4×4)) and 84×84 the tasks win (F(4×4) at 42×42, 160 → 160: 28–30
 * against 31–39 phased; 84×84: 19–20 against 32), their transformed input staying in the cache. Hence phased up
 * to 512 tiles. */
#define WINOGRAD_PHASED_TILES 512

static int use_phased(const WinogradShape* s) { return tile_total(s) <= WINOGRAD_PHASED_TILES; }

typedef struct {
  const WinogradShape* s;
  const float *x, *w, *u;
  float* y;
  size_t tiles;
  float *v, *m, *bad, *zeros;
  winograd_scratch_fn scratch;
  atomic_int failed;
} Phased;

static void phased_inputs(void* ctx, size_t b, size_t e) {
  Phased* t = (Phased*)ctx;
  const size_t C = (size_t)t->s->C;
  for (size_t k = b; k < e; k++) {
    const float* p[36];
    tile_inputs(t->s, t->x, (int64_t)k, t->zeros, p);
    t->bad[k] = transform_input(t->s, p, t->v + k * C, t->tiles * C) ? 0.f : 1.f;
  }
}

static void phased_products(void* ctx, size_t b, size_t e) {
  Phased* t = (Phased*)ctx;
  const size_t C = (size_t)t->s->C, O = (size_t)t->s->O, T = t->tiles;
  for (size_t xi = b; xi < e; xi++)
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)T, (int)O, (int)C, 1.f, t->v + xi * T * C, (int)C,
                t->u + xi * C * O, (int)O, 0.f, t->m + xi * T * O, (int)O);
}

static void phased_outputs(void* ctx, size_t b, size_t e) {
  Phased* t = (Phased*)ctx;
  const size_t O = (size_t)t->s->O;
  float* dump = t->scratch((size_t)(t->s->m * t->s->m) * O);
  if (!dump) {
    atomic_store(&t->failed, 1);
    return;
  }
  for (size_t k = b; k < e; k++)
    finish_tile(t->s, t->x, t->w, t->y, (int64_t)k, t->bad[k] != 0.f, t->m + k * O, t->tiles * O, dump);
}

static int winograd_phased(const WinogradShape* s, const float* x, const float* w, const float* u, float* y,
                           winograd_scratch_fn scratch) {
  const size_t C = (size_t)s->C, O = (size_t)s->O, T = tile_total(s), nx = (size_t)((s->m + 2) * (s->m + 2));
  Buffer buf = buffer_take(nx * T * (C + O) + T + C);
  if (!buf.data) return -1;
  Phased t = {s, x, w, u, y, T, buf.data, buf.data + nx * T * C, buf.data + nx * T * (C + O),
              buf.data + nx * T * (C + O) + T, scratch, 0};
  memset(t.zeros, 0, C * sizeof(float));
  pool_parallel_for(T, 1, phased_inputs, &t);
  pool_parallel_tasks(nx, phased_products, &t);
  pool_parallel_for(T, 1, phased_outputs, &t);
  buffer_give(buf);
  return atomic_load(&t.failed) ? -1 : 0;
}

int winograd_conv3x3(const WinogradShape* s, const float* x, const float* w, float* y, winograd_scratch_fn scratch) {
  const size_t C = (size_t)s->C, O = (size_t)s->O, nx = (size_t)((s->m + 2) * (s->m + 2));
  Buffer ub = buffer_take(nx * C * O);
  float* u = ub.data;
  if (!u) return -1;
  FilterTransform ft = {s, w, u, 0};
  size_t grain = 4096 / (O ? O : 1);
  pool_parallel_for(C, grain ? grain : 1, filter_transform_range, &ft);
  if (atomic_load(&ft.nonfinite)) {
    buffer_give(ub);
    DirectRows d = {s, x, w, y};
    pool_parallel_for((size_t)(s->batch * s->outH), 1, direct_rows, &d);
    return 0;
  }
  int rc;
  if (use_phased(s)) {
    rc = winograd_phased(s, x, w, u, y, scratch);
  } else {
    Tasks t = {s, x, w, u, y, winograd_tile_count(s), tile_total(s), scratch, 0};
    pool_parallel_tasks((t.tiles + t.per_task - 1) / t.per_task, winograd_tasks, &t);
    rc = atomic_load(&t.failed) ? -1 : 0;
  }
  buffer_give(ub);
  return rc;
}

/* ---------------------------------------------------------------------------------------------- */
/* Filter gradient. With L = Σ dy·y and y's tile Aᵀ [Σ_c U ⊙ V] A, ∂L/∂U_ξ = Σ_tiles V_ξᵀ·(A dy_tile Aᵀ)_ξ (one
 * product [C, tiles]·[tiles, O] per ξ, summed over the tiles) and ∂L/∂g = Gᵀ (∂L/∂U) G: the adjoint of the
 * forward map, so the same saving as the forward pass. Each thread sums its tasks' products into a partial sum
 * of its own; the partial sums are added in slot order and transformed back at the end (on the phased path, one
 * product per ξ over all tiles, and no partial sums). */

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

/* A·(e0, e1, e2, e3) for F(4×4): (e0, (e0 + e2) + (e1 + e3), (e0 + e2) − (e1 + e3), (e0 + 4e2) + (2e1 + 8e3),
 * (e0 + 4e2) − (2e1 + 8e3), e3). */
#define A6(e0, e1, e2, e3, y)                                                 \
  do {                                                                        \
    const float s02_ = (e0) + (e2), s13_ = (e1) + (e3);                       \
    const float t02_ = (e0) + 4.f * (e2), t13_ = 2.f * (e1) + 8.f * (e3);    \
    (y)[0] = (e0);                                                            \
    (y)[1] = s02_ + s13_;                                                     \
    (y)[2] = s02_ - s13_;                                                     \
    (y)[3] = t02_ + t13_;                                                     \
    (y)[4] = t02_ - t13_;                                                     \
    (y)[5] = (e3);                                                            \
  } while (0)

/* F(4×4) dy transform of one tile: w[ξ·stride + o] = (A e Aᵀ)[i][j], ξ = 6i + j, e[a][b] = q[4a + b][o].
 * Returns whether every value is finite. */
WINOGRAD_CLONES
static int dy_transform4(const float* const* qs, size_t O, float* restrict w, size_t stride) {
  const float* q[16];
  for (int i = 0; i < 16; i++) q[i] = qs[i];
  int nonfinite = 0;
  /* The streams never overlap (distinct ξ planes). */
#pragma GCC ivdep
  for (size_t o = 0; o < O; o++) {
    float col[4][6], r[6];
    float sum = 0.f;
    /* Columns of A·e (6 × 4), then each row times Aᵀ. */
    #pragma GCC unroll 36
    for (int b = 0; b < 4; b++) A6(q[b][o], q[4 + b][o], q[8 + b][o], q[12 + b][o], col[b]);
    #pragma GCC unroll 36
    for (int i = 0; i < 6; i++) {
      A6(col[0][i], col[1][i], col[2][i], col[3][i], r);
      #pragma GCC unroll 36
      for (int j = 0; j < 6; j++) {
        w[(size_t)(6 * i + j) * stride + o] = r[j];
        sum += r[j];
      }
    }
    const float z = sum * 0.f;
    nonfinite |= z != z;
  }
  return !nonfinite;
}

/* The dy transform of tile `tile` into w[ξ·stride + o] (zero_out, O zeros, for the rows outside the image). */
static int transform_dy(const WinogradShape* s, const float* dy, int64_t tile, const float* zero_out, float* w,
                        size_t stride) {
  const float* q[16];
  int64_t n, oy0, ox0;
  tile_outputs(s, (float*)dy, tile, (float**)q, &n, &oy0, &ox0);
  for (int64_t i = 0; i < s->m * s->m; i++)
    if (!q[i]) q[i] = zero_out;
  return s->m == 4 ? dy_transform4(q, (size_t)s->O, w, stride)
                   : dy_transform(q[0], q[1], q[2], q[3], (size_t)s->O, w, stride);
}

#define WINOGRAD_MAX_PARTIALS 64

typedef struct {
  const WinogradShape* s;
  const float *x, *dy;
  size_t per_task, tiles;
  winograd_scratch_fn scratch;
  Buffer partials[WINOGRAD_MAX_PARTIALS];
  atomic_size_t next_slot;
  atomic_int failed, nonfinite;
} GradTasks;

/* Tasks [b, e) into a partial sum of its own thread. */
static void gradient_range(void* ctx, size_t b, size_t e) {
  GradTasks* t = (GradTasks*)ctx;
  const WinogradShape* s = t->s;
  const size_t C = (size_t)s->C, O = (size_t)s->O, tc = t->per_task, nx = (size_t)((s->m + 2) * (s->m + 2));
  const size_t slot = atomic_fetch_add(&t->next_slot, 1);
  float* buf = t->scratch(nx * tc * (C + O) + C + O);
  if (slot < WINOGRAD_MAX_PARTIALS) t->partials[slot] = buffer_take(nx * C * O);
  float* acc = slot < WINOGRAD_MAX_PARTIALS ? t->partials[slot].data : NULL;
  if (!buf || !acc) {
    atomic_store(&t->failed, 1);
    return;
  }
  float *v = buf, *w = v + nx * tc * C, *zeros = w + nx * tc * O, *zero_out = zeros + C;
  memset(zeros, 0, (C + O) * sizeof(float));
  int finite = 1;
  for (size_t task = b; task < e && finite; task++) {
    const size_t first = task * tc, count = first + tc < t->tiles ? tc : t->tiles - first;
    for (size_t k = 0; k < count && finite; k++) {
      const int64_t tile = (int64_t)(first + k);
      const float* p[36];
      tile_inputs(s, t->x, tile, zeros, p);
      finite &= transform_input(s, p, v + k * C, tc * C);
      finite &= transform_dy(s, t->dy, tile, zero_out, w + k * O, tc * O);
    }
    if (!finite) break;
    for (size_t xi = 0; xi < nx; xi++)
      cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)C, (int)O, (int)count, 1.f, v + xi * tc * C, (int)C,
                  w + xi * tc * O, (int)O, task == b ? 0.f : 1.f, acc + xi * C * O, (int)O);
  }
  if (!finite) atomic_store(&t->nonfinite, 1);
}

/* The phased filter gradient (few tiles): all tiles' V [n][tiles][C] and W [n][tiles][O], then each ξ's
 * product V_ξᵀ·W_ξ over all tiles as a task of its own, straight into ∂U_ξ (no partial sums). */
typedef struct {
  const WinogradShape* s;
  const float *x, *dy;
  size_t tiles;
  float *v, *w, *du, *zeros;
  atomic_int nonfinite;
} PhasedGradient;

static void phased_gradient_inputs(void* ctx, size_t b, size_t e) {
  PhasedGradient* t = (PhasedGradient*)ctx;
  const size_t C = (size_t)t->s->C, O = (size_t)t->s->O, T = t->tiles;
  int finite = 1;
  for (size_t k = b; k < e && finite; k++) {
    const float* p[36];
    tile_inputs(t->s, t->x, (int64_t)k, t->zeros, p);
    finite &= transform_input(t->s, p, t->v + k * C, T * C);
    finite &= transform_dy(t->s, t->dy, (int64_t)k, t->zeros + C, t->w + k * O, T * O);
  }
  if (!finite) atomic_store(&t->nonfinite, 1);
}

static void phased_gradient_products(void* ctx, size_t b, size_t e) {
  PhasedGradient* t = (PhasedGradient*)ctx;
  const size_t C = (size_t)t->s->C, O = (size_t)t->s->O, T = t->tiles;
  for (size_t xi = b; xi < e; xi++)
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)C, (int)O, (int)T, 1.f, t->v + xi * T * C, (int)C,
                t->w + xi * T * O, (int)O, 0.f, t->du + xi * C * O, (int)O);
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

/* Gᵀ·(u0, …, u5) for F(4×4): (u0/4 − (u1 + u2)/6 + (u3 + u4)/24, (u2 − u1)/6 + (u3 − u4)/12,
 * ((u3 + u4) − (u1 + u2))/6 + u5). */
#define GT6(u0, u1, u2, u3, u4, u5, y)                                        \
  do {                                                                        \
    const float s12_ = (u1) + (u2), s34_ = (u3) + (u4);                       \
    (y)[0] = 0.25f * (u0) - (1.f / 6.f) * s12_ + (1.f / 24.f) * s34_;         \
    (y)[1] = (1.f / 6.f) * ((u2) - (u1)) + (1.f / 12.f) * ((u3) - (u4));      \
    (y)[2] = (1.f / 6.f) * (s34_ - s12_) + (u5);                              \
  } while (0)

/* F(4×4): ∂g = Gᵀ dU G per (c, o). */
WINOGRAD_CLONES
static void gradient_output_channel4(const float* restrict du, float* restrict dw, size_t O, size_t plane) {
#pragma GCC ivdep
  for (size_t o = 0; o < O; o++) {
    float col[6][3], r[3];
    /* Columns of Gᵀ·dU (3 × 6), then each row times G. */
    #pragma GCC unroll 36
    for (int b = 0; b < 6; b++)
      GT6(du[(size_t)b * plane + o], du[(size_t)(6 + b) * plane + o], du[(size_t)(12 + b) * plane + o],
          du[(size_t)(18 + b) * plane + o], du[(size_t)(24 + b) * plane + o], du[(size_t)(30 + b) * plane + o],
          col[b]);
    #pragma GCC unroll 36
    for (int a = 0; a < 3; a++) {
      GT6(col[0][a], col[1][a], col[2][a], col[3][a], col[4][a], col[5][a], r);
      #pragma GCC unroll 36
      for (int b = 0; b < 3; b++) dw[(size_t)(3 * a + b) * plane + o] = r[b];
    }
  }
}

static void gradient_output_range(void* ctx, size_t c0, size_t c1) {
  const GradOutput* g = (const GradOutput*)ctx;
  const size_t C = (size_t)g->s->C, O = (size_t)g->s->O;
  for (size_t c = c0; c < c1; c++) {
    if (g->s->m == 4)
      gradient_output_channel4(g->du + c * O, g->dw + c * O, O, C * O);
    else
      gradient_output_channel(g->du + c * O, g->dw + c * O, O, C * O);
  }
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

/* The phased filter gradient into du (n·C·O floats): 0, 1 when x or dy holds a NaN or an infinity, -1 when
 * memory ran out. */
static int filter_gradient_phased(const WinogradShape* s, const float* x, const float* dy, float* du) {
  const size_t C = (size_t)s->C, O = (size_t)s->O, T = tile_total(s), nx = (size_t)((s->m + 2) * (s->m + 2));
  Buffer buf = buffer_take(nx * T * (C + O) + C + O);
  if (!buf.data) return -1;
  PhasedGradient t = {s, x, dy, T, buf.data, buf.data + nx * T * C, du, buf.data + nx * T * (C + O), 0};
  memset(t.zeros, 0, (C + O) * sizeof(float));
  pool_parallel_for(T, 1, phased_gradient_inputs, &t);
  const int rc = atomic_load(&t.nonfinite) ? 1 : 0;
  if (rc == 0) pool_parallel_tasks(nx, phased_gradient_products, &t);
  buffer_give(buf);
  return rc;
}

/* The filter gradient by tasks of consecutive tiles into du (n·C·O floats, the first partial sum, which
 * becomes the caller's): as filter_gradient_phased. */
static int filter_gradient_tasks(const WinogradShape* s, const float* x, const float* dy, Buffer* du,
                                 winograd_scratch_fn scratch) {
  const size_t C = (size_t)s->C, O = (size_t)s->O, nx = (size_t)((s->m + 2) * (s->m + 2));
  GradTasks t;
  memset(&t, 0, sizeof t);
  t.s = s, t.x = x, t.dy = dy, t.scratch = scratch;
  t.per_task = winograd_tile_count(s);
  t.tiles = tile_total(s);
  atomic_store(&t.next_slot, 0);
  atomic_store(&t.failed, 0);
  atomic_store(&t.nonfinite, 0);
  pool_parallel_for((t.tiles + t.per_task - 1) / t.per_task, 1, gradient_range, &t);
  size_t count = atomic_load(&t.next_slot);
  if (count > WINOGRAD_MAX_PARTIALS) count = WINOGRAD_MAX_PARTIALS;
  const int rc = atomic_load(&t.failed) ? -1 : atomic_load(&t.nonfinite) ? 1 : 0;
  if (rc == 0 && count > 1) {
    /* Partial sums in slot order: slot numbers follow the order in which the threads started. */
    float* sums[WINOGRAD_MAX_PARTIALS];
    for (size_t i = 0; i < count; i++) sums[i] = t.partials[i].data;
    PartialSums p = {sums[0], sums, count};
    pool_parallel_for(nx * C * O, 32768, add_partial_sums, &p);
  }
  *du = t.partials[0];
  for (size_t i = 1; i < count; i++) buffer_give(t.partials[i]);
  return rc;
}

int winograd_filter_gradient3x3(const WinogradShape* s, const float* x, const float* dy, float* dw,
                                winograd_scratch_fn scratch) {
  const size_t C = (size_t)s->C, O = (size_t)s->O;
  Buffer du = {NULL, 0};
  int rc;
  if (use_phased(s)) {
    du = buffer_take((size_t)((s->m + 2) * (s->m + 2)) * C * O);
    rc = du.data ? filter_gradient_phased(s, x, dy, du.data) : -1;
  } else {
    rc = filter_gradient_tasks(s, x, dy, &du, scratch);
  }
  if (rc == 0) {
    GradOutput g = {s, du.data, dw};
    const size_t grain = 4096 / (O ? O : 1);
    pool_parallel_for(C, grain ? grain : 1, gradient_output_range, &g);
  }
  buffer_give(du);
  if (rc == 1) {
    DirectGradient d = {s, x, dy, dw};
    pool_parallel_for(C, 1, direct_gradient_range, &d);
    rc = 0;
  }
  return rc;
}
