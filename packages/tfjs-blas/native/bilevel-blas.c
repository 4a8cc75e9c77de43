/*
 * Native kernels of the `cpu-blas` TensorFlow.js backend (@bilevel/tfjs-blas).
 *
 * A plain N-API addon (node_api.h only, no C++ wrapper) around the system CBLAS: OpenBLAS on Linux,
 * Accelerate on macOS. Every entry point works in place on Float32Arrays owned by JavaScript (the cpu
 * backend's tensor storage), so no tensor data is copied across the boundary.
 *
 * Kernels (all row-major, NHWC for images):
 *   sgemm                 C = alpha·op(A)·op(B) + beta·C, a thin checked wrapper of cblas_sgemm.
 *   batchMatMul           C[i] = op(A[aIndex[i]])·op(B[bIndex[i]]) (+ bias, activation), batch dims broadcast
 *                         by the caller through the index arrays.
 *   conv2d                y = x ⋆ w (+ bias, activation) by im2col + GEMM: the patch matrix P [M, K] with
 *                         M = N·outH·outW and K = fH·fW·inC times the filter W [K, outC] (HWIO is already
 *                         [K, outC] row-major). P is built in blocks of rows to bound the scratch memory.
 *   conv2dBackpropInput   dx = col2im(dy·Wᵀ): the transposed convolution, scattered back (Chellapilla et al.,
 *                         "High performance convolutional neural networks for document processing", 2006).
 *   conv2dBackpropFilter  dW = Σ_blocks Pᵀ·dy, accumulated block by block with beta = 1.
 */
#include <node_api.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conv-net.h"
#include "winograd.h"
#include "napi-args.h"
#include "thread-pool.h"
#include "vector-math.h"

#ifdef BILEVEL_ACCELERATE
#include <Accelerate/Accelerate.h>
#else
#include <cblas.h>
#endif

/* Element-wise loops are compiled for AVX-512 and AVX2 too and picked at load by the CPU (GCC function
 * multi-versioning by CPU feature, x86-64 Linux); elsewhere the portable build (NEON is baseline on ARM64).
 * -fno-trapping-math (binding.gyp) lets the compiler turn the special-value selects into vector blends. */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
#define VECTOR_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define VECTOR_CLONES
#endif

/* Smallest element count per thread in the threaded element-wise kernels (128 KB of float32). */
#define PARALLEL_GRAIN 32768

/* Whether a row-major matrix of `rows` × `cols` with leading dimension `ld` fits in `length` floats. */
static int fits(size_t length, int64_t rows, int64_t cols, int64_t ld) {
  if (rows == 0 || cols == 0) return 1;
  if (ld < cols) return 0;
  return (uint64_t)((rows - 1) * ld + cols) <= (uint64_t)length;
}

/* ---------------------------------------------------------------------------------------------- */
/* Epilogue: bias (one value per column) and activation, in place. Codes follow the TS side:
 * 0 linear, 1 relu, 2 relu6, 3 leakyrelu(alpha), 4 elu, 5 sigmoid. */

enum { ACT_LINEAR = 0, ACT_RELU = 1, ACT_RELU6 = 2, ACT_LEAKY = 3, ACT_ELU = 4, ACT_SIGMOID = 5 };

static void epilogue(float* out, size_t rows, size_t cols, const float* bias, int act, float alpha) {
  if (bias == NULL && act == ACT_LINEAR) return;
  for (size_t r = 0; r < rows; r++) {
    float* row = out + r * cols;
    if (bias != NULL)
      for (size_t c = 0; c < cols; c++) row[c] += bias[c];
    switch (act) {
      case ACT_RELU:
        for (size_t c = 0; c < cols; c++) row[c] = row[c] < 0.f ? 0.f : row[c];
        break;
      case ACT_RELU6:
        for (size_t c = 0; c < cols; c++) row[c] = row[c] < 0.f ? 0.f : (row[c] > 6.f ? 6.f : row[c]);
        break;
      case ACT_LEAKY:
        for (size_t c = 0; c < cols; c++) row[c] = row[c] < 0.f ? alpha * row[c] : row[c];
        break;
      case ACT_ELU:
        for (size_t c = 0; c < cols; c++) row[c] = row[c] >= 0.f ? row[c] : expf(row[c]) - 1.f;
        break;
      case ACT_SIGMOID:
        for (size_t c = 0; c < cols; c++) row[c] = 1.f / (1.f + expf(-row[c]));
        break;
      default:
        break;
    }
  }
}

static int arg_epilogue(napi_env env, napi_value* argv, const char* fn, size_t cols, float** bias, int* act,
                        float* alpha) {
  size_t bias_len;
  int64_t code;
  double a;
  if (arg_f32(env, argv[0], fn, "bias", 1, bias, &bias_len)) return -1;
  if (*bias != NULL && bias_len != cols) return throw_error(env, fn, "bias must have one value per output column");
  if (arg_int(env, argv[1], fn, "activation", 0, &code)) return -1;
  if (code > ACT_SIGMOID) return throw_error(env, fn, "unknown activation code");
  if (arg_double(env, argv[2], fn, "alpha", &a)) return -1;
  *act = (int)code;
  *alpha = (float)a;
  return 0;
}

/* ---------------------------------------------------------------------------------------------- */
/* Library information and threads. */

static napi_value set_string(napi_env env, napi_value obj, const char* key, const char* value) {
  napi_value v;
  napi_create_string_utf8(env, value ? value : "", NAPI_AUTO_LENGTH, &v);
  napi_set_named_property(env, obj, key, v);
  return obj;
}

static napi_value set_int(napi_env env, napi_value obj, const char* key, int value) {
  napi_value v;
  napi_create_int32(env, value, &v);
  napi_set_named_property(env, obj, key, v);
  return obj;
}

static napi_value js_info(napi_env env, napi_callback_info info) {
  (void)info;
  napi_value obj;
  napi_create_object(env, &obj);
#ifdef BILEVEL_ACCELERATE
  set_string(env, obj, "library", "Accelerate");
  set_string(env, obj, "config", "Apple Accelerate (vecLib)");
  set_string(env, obj, "corename", "");
  set_int(env, obj, "threads", 0);
  set_int(env, obj, "processors", 0);
#else
  set_string(env, obj, "library", "OpenBLAS");
  set_string(env, obj, "config", openblas_get_config());
  set_string(env, obj, "corename", openblas_get_corename());
  set_int(env, obj, "threads", openblas_get_num_threads());
  set_int(env, obj, "processors", openblas_get_num_procs());
#endif
  return obj;
}

static napi_value js_set_threads(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  int64_t n;
  if (get_args(env, info, 1, argv, "setThreads")) return NULL;
  if (arg_int(env, argv[0], "setThreads", "threads", 1, &n)) return NULL;
#ifndef BILEVEL_ACCELERATE
  openblas_set_num_threads((int)n);
#endif
  pool_set_threads((int)n);
  return NULL;
}

/* setSpin(microseconds) -> the setting before: how long pool threads spin before they sleep. */
static napi_value js_set_spin(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  int64_t us;
  if (get_args(env, info, 1, argv, "setSpin")) return NULL;
  if (arg_int(env, argv[0], "setSpin", "microseconds", 0, &us)) return NULL;
  if (us > 100000) return throw_error(env, "setSpin", "microseconds must be at most 100000"), NULL;
  const long before = pool_spin_us();
  pool_set_spin_us((long)us);
  napi_value r;
  napi_create_int64(env, before, &r);
  return r;
}

/* Method of the large matrix-vector products: 0 the worker pool (matvec_pooled), 1 OpenBLAS's own threads. */
static atomic_int matvec_method = 0;

/* setMatVecMethod(method) -> the method before: 0 pool, 1 OpenBLAS (a process-wide switch, also set by
 * BILEVEL_BLAS_MATVEC=openblas when the addon loads). */
static napi_value js_set_matvec_method(napi_env env, napi_callback_info info) {
  napi_value argv[1], result;
  int64_t m;
  if (get_args(env, info, 1, argv, "setMatVecMethod")) return NULL;
  if (arg_int(env, argv[0], "setMatVecMethod", "method", 0, &m)) return NULL;
  if (m > 1) return throw_error(env, "setMatVecMethod", "method must be 0 (pool) or 1 (openblas)"), NULL;
  const int before = atomic_exchange(&matvec_method, (int)m);
  napi_create_int32(env, before, &result);
  return result;
}

/* Method of the 3×3, stride-1 convolutions (winograd_applies, OpenBLAS builds). */
static atomic_int conv_method = 0;
static void set_conv_method(int method) { atomic_store(&conv_method, method); }

/* setConvMethod(method): 0 auto, 1 im2col, 2 winograd F(2×2, 3×3), 3 winograd F(4×4, 3×3) (3×3, stride-1
 * convolutions; OpenBLAS builds). */
static napi_value js_set_conv_method(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  int64_t m;
  if (get_args(env, info, 1, argv, "setConvMethod")) return NULL;
  if (arg_int(env, argv[0], "setConvMethod", "method", 0, &m)) return NULL;
  if (m > 3)
    return throw_error(env, "setConvMethod", "method must be 0 (auto), 1 (im2col), 2 (winograd) or 3 (winograd4)"),
           NULL;
  set_conv_method((int)m);
  return NULL;
}

/* ---------------------------------------------------------------------------------------------- */
/* sgemm(transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc) */

static napi_value js_sgemm(napi_env env, napi_callback_info info) {
  const char* fn = "sgemm";
  napi_value argv[13];
  bool ta, tb;
  int64_t m, n, k, lda, ldb, ldc;
  double alpha, beta;
  float *a, *b, *c;
  size_t la, lb, lc;
  if (get_args(env, info, 13, argv, fn)) return NULL;
  if (arg_bool(env, argv[0], fn, "transA", &ta) || arg_bool(env, argv[1], fn, "transB", &tb) ||
      arg_int(env, argv[2], fn, "m", 0, &m) || arg_int(env, argv[3], fn, "n", 0, &n) ||
      arg_int(env, argv[4], fn, "k", 0, &k) || arg_double(env, argv[5], fn, "alpha", &alpha) ||
      arg_f32(env, argv[6], fn, "a", 0, &a, &la) || arg_int(env, argv[7], fn, "lda", 1, &lda) ||
      arg_f32(env, argv[8], fn, "b", 0, &b, &lb) || arg_int(env, argv[9], fn, "ldb", 1, &ldb) ||
      arg_double(env, argv[10], fn, "beta", &beta) || arg_f32(env, argv[11], fn, "c", 0, &c, &lc) ||
      arg_int(env, argv[12], fn, "ldc", 1, &ldc))
    return NULL;
  if (!fits(la, ta ? k : m, ta ? m : k, lda)) return throw_error(env, fn, "a is too small for m, k and lda"), NULL;
  if (!fits(lb, tb ? n : k, tb ? k : n, ldb)) return throw_error(env, fn, "b is too small for k, n and ldb"), NULL;
  if (!fits(lc, m, n, ldc)) return throw_error(env, fn, "c is too small for m, n and ldc"), NULL;
  if (m == 0 || n == 0) return NULL;
  if (k == 0) {
    for (int64_t i = 0; i < m; i++)
      for (int64_t j = 0; j < n; j++) c[i * ldc + j] = beta == 0.0 ? 0.f : (float)beta * c[i * ldc + j];
    return NULL;
  }
  cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, (int)m, (int)n, (int)k,
              (float)alpha, a, (int)lda, b, (int)ldb, (float)beta, c, (int)ldc);
  return NULL;
}

/* ---------------------------------------------------------------------------------------------- */
/* A product with few output columns (n < 16, e.g. logits of 10 classes) runs faster as its transpose,
 * Cᵀ = op(B)ᵀ·op(A)ᵀ, which streams the long operand along its rows; the [n, m] result is then transposed. */

static int is_skinny(int m, int n) { return n < 16 && m >= 4 * n; }

static int matvec_pooled(bool trans, int rows, int cols, const float* a, int lda, const float* x, float* y);
static int gemm_rows(bool ta, int m, int n, int k, const float* a, int lda, const float* b, int ldb, float* c);
static int gemm_cols(bool tb, int m, int n, int k, const float* a, int lda, const float* b, int ldb, float* c);

/* c (m × n, ld n) = op(a)·op(b); `scratch` (m·n floats) enables the transposed path for skinny outputs. */
static void gemm(bool ta, bool tb, int m, int n, int k, const float* a, int lda, const float* b, int ldb, float* c,
                 float* scratch) {
  /* Matrix-vector products stream the matrix once through sgemv, about 3x faster than sgemm with one
   * column (the quadratic toy's d = 1,000 products: 65 us instead of 190 us). The vector operand is
   * contiguous in either storage order ([k, 1] or [1, k]). */
  if (n == 1) {
    if (ta) {
      if (!matvec_pooled(true, k, m, a, lda, b, c)) cblas_sgemv(CblasRowMajor, CblasTrans, k, m, 1.f, a, lda, b, 1, 0.f, c, 1);
    } else if (!matvec_pooled(false, m, k, a, lda, b, c)) {
      cblas_sgemv(CblasRowMajor, CblasNoTrans, m, k, 1.f, a, lda, b, 1, 0.f, c, 1);
    }
    return;
  }
  if (m == 1) {
    if (tb) {
      if (!matvec_pooled(false, n, k, b, ldb, a, c)) cblas_sgemv(CblasRowMajor, CblasNoTrans, n, k, 1.f, b, ldb, a, 1, 0.f, c, 1);
    } else if (!matvec_pooled(true, k, n, b, ldb, a, c)) {
      cblas_sgemv(CblasRowMajor, CblasTrans, k, n, 1.f, b, ldb, a, 1, 0.f, c, 1);
    }
    return;
  }
  /* A few rows times a large matrix (ES's Q directions through d × d operators): row blocks of B on the pool. */
  if (!tb && gemm_rows(ta, m, n, k, a, lda, b, ldb, c)) return;
  /* A large matrix times a few columns (the transposed form of the same products): row blocks of A. */
  if (!ta && gemm_cols(tb, m, n, k, a, lda, b, ldb, c)) return;
  if (scratch != NULL && is_skinny(m, n)) {
    cblas_sgemm(CblasRowMajor, tb ? CblasNoTrans : CblasTrans, ta ? CblasNoTrans : CblasTrans, n, m, k, 1.f, b, ldb,
                a, lda, 0.f, scratch, m);
    for (int i = 0; i < m; i++)
      for (int j = 0; j < n; j++) c[(size_t)i * n + j] = scratch[(size_t)j * m + i];
    return;
  }
  cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, m, n, k, 1.f, a, lda, b,
              ldb, 0.f, c, n);
}

/* ---------------------------------------------------------------------------------------------- */
/* batchMatMul(a, b, out, aIndex, bIndex, m, n, k, transA, transB, bias, activation, alpha)
 * a: batchA matrices of op-shape [m, k]; b: batchB of [k, n]; out: aIndex.length matrices [m, n]. */

static napi_value js_batch_mat_mul(napi_env env, napi_callback_info info) {
  const char* fn = "batchMatMul";
  napi_value argv[13];
  float *a, *b, *out, *bias;
  size_t la, lb, lo, lai, lbi;
  int32_t *ai, *bi;
  int64_t m, n, k;
  bool ta, tb;
  int act;
  float alpha;
  if (get_args(env, info, 13, argv, fn)) return NULL;
  if (arg_f32(env, argv[0], fn, "a", 0, &a, &la) || arg_f32(env, argv[1], fn, "b", 0, &b, &lb) ||
      arg_f32(env, argv[2], fn, "out", 0, &out, &lo) || arg_i32(env, argv[3], fn, "aIndex", &ai, &lai) ||
      arg_i32(env, argv[4], fn, "bIndex", &bi, &lbi) || arg_int(env, argv[5], fn, "m", 0, &m) ||
      arg_int(env, argv[6], fn, "n", 0, &n) || arg_int(env, argv[7], fn, "k", 0, &k) ||
      arg_bool(env, argv[8], fn, "transA", &ta) || arg_bool(env, argv[9], fn, "transB", &tb))
    return NULL;
  if (arg_epilogue(env, argv + 10, fn, (size_t)n, &bias, &act, &alpha)) return NULL;
  const size_t batch = lai;
  const size_t sa = (size_t)(m * k), sb = (size_t)(k * n), so = (size_t)(m * n);
  if (lbi != batch) return throw_error(env, fn, "aIndex and bIndex differ in length"), NULL;
  if (lo != batch * so) return throw_error(env, fn, "out must hold batch·m·n values"), NULL;
  const size_t count_a = sa ? la / sa : 0, count_b = sb ? lb / sb : 0;
  for (size_t i = 0; i < batch; i++) {
    if ((sa && (ai[i] < 0 || (size_t)ai[i] >= count_a)) || (sb && (bi[i] < 0 || (size_t)bi[i] >= count_b)))
      return throw_error(env, fn, "batch index out of range"), NULL;
  }
  if (batch == 0 || m == 0 || n == 0) return NULL;
  if (k == 0) {
    memset(out, 0, lo * sizeof(float));
    epilogue(out, batch * (size_t)m, (size_t)n, bias, act, alpha);
    return NULL;
  }
  const int lda = (int)(ta ? m : k), ldb = (int)(tb ? k : n);
  /* A stacked batch times one shared B is a single tall GEMM: rows of consecutive A's are contiguous. */
  int fold = !ta && batch > 1;
  for (size_t i = 0; fold && i < batch; i++) fold = ai[i] == (int32_t)i && bi[i] == bi[0];
  const int rows = (int)(fold ? batch * (size_t)m : (size_t)m);
  float* scratch = NULL;
  if (n > 1 && rows > 1 && is_skinny(rows, (int)n)) {
    scratch = (float*)malloc((size_t)rows * (size_t)n * sizeof(float));
    if (!scratch) return throw_error(env, fn, "out of memory"), NULL;
  }
  if (fold) {
    gemm(ta, tb, rows, (int)n, (int)k, a, lda, b + (size_t)bi[0] * sb, ldb, out, scratch);
  } else {
    for (size_t i = 0; i < batch; i++)
      gemm(ta, tb, (int)m, (int)n, (int)k, a + (size_t)ai[i] * sa, lda, b + (size_t)bi[i] * sb, ldb, out + i * so, scratch);
  }
  free(scratch);
  epilogue(out, batch * (size_t)m, (size_t)n, bias, act, alpha);
  return NULL;
}

/* ---------------------------------------------------------------------------------------------- */
/* Convolution geometry (NHWC input, HWIO filter), as 15 int32 values:
 * batch, inH, inW, inC, outH, outW, outC, fH, fW, strideH, strideW, dilH, dilW, padTop, padLeft. */

typedef struct {
  int64_t batch, inH, inW, inC, outH, outW, outC, fH, fW, sH, sW, dH, dW, padTop, padLeft;
} Geom;

static int arg_geom(napi_env env, napi_value v, const char* fn, Geom* g) {
  int32_t* p;
  size_t len;
  if (arg_i32(env, v, fn, "geometry", &p, &len)) return -1;
  if (len != 15) return throw_error(env, fn, "geometry must hold 15 values");
  for (int i = 0; i < 13; i++)
    if (p[i] < (i < 7 ? 0 : 1)) return throw_error(env, fn, "geometry has a negative size or a zero stride");
  g->batch = p[0], g->inH = p[1], g->inW = p[2], g->inC = p[3], g->outH = p[4], g->outW = p[5], g->outC = p[6];
  g->fH = p[7], g->fW = p[8], g->sH = p[9], g->sW = p[10], g->dH = p[11], g->dW = p[12], g->padTop = p[13];
  g->padLeft = p[14];
  return 0;
}

static size_t geom_x(const Geom* g) { return (size_t)(g->batch * g->inH * g->inW * g->inC); }
static size_t geom_y(const Geom* g) { return (size_t)(g->batch * g->outH * g->outW * g->outC); }
static size_t geom_w(const Geom* g) { return (size_t)(g->fH * g->fW * g->inC * g->outC); }
static size_t geom_rows(const Geom* g) { return (size_t)(g->batch * g->outH * g->outW); }
static size_t geom_k(const Geom* g) { return (size_t)(g->fH * g->fW * g->inC); }

/* A 1×1, stride-1, unpadded convolution is a plain GEMM on the input itself. */
static int geom_is_pointwise(const Geom* g) {
  return g->fH == 1 && g->fW == 1 && g->sH == 1 && g->sW == 1 && g->padTop == 0 && g->padLeft == 0 &&
         g->outH == g->inH && g->outW == g->inW;
}

/* Rows of the patch matrix per block: about 8 MB of scratch, but at least one row. */
static size_t block_rows(const Geom* g) {
  const size_t k = geom_k(g), m = geom_rows(g);
  size_t rows = ((size_t)1 << 21) / (k ? k : 1);
  if (rows < 1) rows = 1;
  return rows < m ? rows : m;
}

/* Patch rows [r0, r1) of x into cols ([r1 − r0, K], K ordered (ky, kx, c) like the HWIO filter). */
static void im2col(const Geom* g, const float* x, size_t r0, size_t r1, float* cols) {
  const size_t K = geom_k(g), C = (size_t)g->inC, plane = (size_t)(g->outH * g->outW);
  for (size_t r = r0; r < r1; r++) {
    const size_t n = r / plane, rem = r % plane;
    const int64_t oy = (int64_t)(rem / (size_t)g->outW), ox = (int64_t)(rem % (size_t)g->outW);
    const int64_t iy0 = oy * g->sH - g->padTop, ix0 = ox * g->sW - g->padLeft;
    float* dst = cols + (r - r0) * K;
    const float* img = x + n * (size_t)(g->inH * g->inW) * C;
    for (int64_t ky = 0; ky < g->fH; ky++) {
      const int64_t iy = iy0 + ky * g->dH;
      float* drow = dst + (size_t)(ky * g->fW) * C;
      if (iy < 0 || iy >= g->inH) {
        memset(drow, 0, (size_t)g->fW * C * sizeof(float));
        continue;
      }
      const float* srow = img + (size_t)(iy * g->inW) * C;
      if (g->dW == 1 && ix0 >= 0 && ix0 + g->fW <= g->inW) {
        memcpy(drow, srow + (size_t)ix0 * C, (size_t)g->fW * C * sizeof(float));
        continue;
      }
      for (int64_t kx = 0; kx < g->fW; kx++) {
        const int64_t ix = ix0 + kx * g->dW;
        float* d = drow + (size_t)kx * C;
        if (ix < 0 || ix >= g->inW) {
          for (size_t c = 0; c < C; c++) d[c] = 0.f;
        } else {
          const float* src = srow + (size_t)ix * C;
          for (size_t c = 0; c < C; c++) d[c] = src[c];
        }
      }
    }
  }
}

/* Adjoint of im2col: dx += scatter of cols rows [r0, r1). */
static void col2im_add(const Geom* g, const float* cols, size_t r0, size_t r1, float* dx) {
  const size_t K = geom_k(g), C = (size_t)g->inC, plane = (size_t)(g->outH * g->outW);
  for (size_t r = r0; r < r1; r++) {
    const size_t n = r / plane, rem = r % plane;
    const int64_t oy = (int64_t)(rem / (size_t)g->outW), ox = (int64_t)(rem % (size_t)g->outW);
    const int64_t iy0 = oy * g->sH - g->padTop, ix0 = ox * g->sW - g->padLeft;
    const float* src = cols + (r - r0) * K;
    float* img = dx + n * (size_t)(g->inH * g->inW) * C;
    for (int64_t ky = 0; ky < g->fH; ky++) {
      const int64_t iy = iy0 + ky * g->dH;
      if (iy < 0 || iy >= g->inH) continue;
      const float* srow = src + (size_t)(ky * g->fW) * C;
      float* drow = img + (size_t)(iy * g->inW) * C;
      for (int64_t kx = 0; kx < g->fW; kx++) {
        const int64_t ix = ix0 + kx * g->dW;
        if (ix < 0 || ix >= g->inW) continue;
        const float* s = srow + (size_t)kx * C;
        float* d = drow + (size_t)ix * C;
        for (size_t c = 0; c < C; c++) d[c] += s[c];
      }
    }
  }
}

/* im2col and col2im over the worker pool. im2col rows are independent; col2im_add scatters overlapping
 * windows, so it is split by whole images (windows of different images never overlap). */
typedef struct {
  const Geom* g;
  const float* src;
  float* dst;
  size_t r0, r1;
} PatchTask;

static void im2col_range(void* ctx, size_t b, size_t e) {
  const PatchTask* t = (const PatchTask*)ctx;
  im2col(t->g, t->src, t->r0 + b, t->r0 + e, t->dst + b * geom_k(t->g));
}

static void im2col_parallel(const Geom* g, const float* x, size_t r0, size_t r1, float* cols) {
  PatchTask t = {g, x, cols, r0, r1};
  const size_t k = geom_k(g);
  pool_parallel_for(r1 - r0, PARALLEL_GRAIN / (k ? k : 1) + 1, im2col_range, &t);
}

/* Images [b, e) among those the rows [r0, r1) touch. */
static void col2im_range(void* ctx, size_t b, size_t e) {
  const PatchTask* t = (const PatchTask*)ctx;
  const size_t plane = (size_t)(t->g->outH * t->g->outW);
  const size_t first = t->r0 / plane;
  size_t lo = (first + b) * plane, hi = (first + e) * plane;
  if (lo < t->r0) lo = t->r0;
  if (hi > t->r1) hi = t->r1;
  if (lo < hi) col2im_add(t->g, t->src + (lo - t->r0) * geom_k(t->g), lo, hi, t->dst);
}

static void col2im_add_parallel(const Geom* g, const float* cols, size_t r0, size_t r1, float* dx) {
  const size_t plane = (size_t)(g->outH * g->outW);
  const size_t images = (r1 - 1) / plane - r0 / plane + 1;
  PatchTask t = {g, cols, dx, r0, r1};
  const size_t rows = r1 - r0;
  /* Parallel only when each image is worth a task; col2im_add indexes cols from its own r0. */
  if (images < 2 || rows * geom_k(g) < 2 * PARALLEL_GRAIN) {
    col2im_add(g, cols, r0, r1, dx);
    return;
  }
  pool_parallel_for(images, 1, col2im_range, &t);
}

/* Tiled convolutions (OpenBLAS builds). The output rows are cut into tiles of a few MB of patches; each tile
 * is a task of the worker pool that builds its patch rows in a scratch of its own thread and multiplies them
 * with a one-threaded sgemm, so the two phases never wait for each other and there is no barrier inside the
 * products: a thread that the OS deschedules on a busy machine delays one tile, not the whole layer (a
 * multi-threaded sgemm waits for its slowest thread at every block). OpenBLAS is set to one thread for the
 * duration of the call and restored after. The input gradient of a stride-1 convolution is itself a
 * convolution (of dy with the spatially flipped filter, channels swapped), so it is tiled the same way
 * instead of being scattered back by col2im; the filter gradient accumulates Pᵀ·dy per thread and adds the
 * threads' partial sums at the end. */
#ifndef BILEVEL_ACCELERATE
#define CONV_TILED 1

/* Scratch of the calling thread, kept between calls; freed when a worker exits (and the JS thread's at the
 * addon's cleanup). */
typedef struct {
  float* data;
  size_t cap;
} Scratch;
static pthread_key_t scratch_key;
static pthread_once_t scratch_once = PTHREAD_ONCE_INIT;
static void scratch_destroy(void* p) {
  Scratch* s = (Scratch*)p;
  free(s->data);
  free(s);
}
static void scratch_key_init(void) { pthread_key_create(&scratch_key, scratch_destroy); }
static float* thread_scratch(size_t floats) {
  pthread_once(&scratch_once, scratch_key_init);
  Scratch* s = (Scratch*)pthread_getspecific(scratch_key);
  if (!s) {
    s = (Scratch*)calloc(1, sizeof *s);
    if (!s || pthread_setspecific(scratch_key, s) != 0) {
      free(s);
      return NULL;
    }
  }
  if (s->cap < floats) {
    free(s->data);
    s->data = (float*)malloc(floats * sizeof(float));
    s->cap = s->data ? floats : 0;
  }
  return s->data;
}
static void free_thread_scratch(void) {
  pthread_once(&scratch_once, scratch_key_init);
  Scratch* s = (Scratch*)pthread_getspecific(scratch_key);
  if (s) {
    pthread_setspecific(scratch_key, NULL);
    scratch_destroy(s);
  }
}

/* OpenBLAS on one thread for the duration of a tiled kernel, then back to the setting before; counted under a
 * lock, so that callers on several JS threads (worker_threads loading the addon) restore the setting once. */
static pthread_mutex_t single_lock = PTHREAD_MUTEX_INITIALIZER;
static int single_depth = 0;
static int saved_blas_threads = 1;
static void blas_single_enter(void) {
  pthread_mutex_lock(&single_lock);
  if (single_depth++ == 0) {
    saved_blas_threads = openblas_get_num_threads();
    openblas_set_num_threads(1);
  }
  pthread_mutex_unlock(&single_lock);
}
static void blas_single_leave(void) {
  pthread_mutex_lock(&single_lock);
  if (--single_depth == 0) openblas_set_num_threads(saved_blas_threads);
  pthread_mutex_unlock(&single_lock);
}

/* ---------------------------------------------------------------------------------------------- */
/* Matrix-vector products on the worker pool. OpenBLAS splits an sgemv into one fixed share per thread and
 * the caller waits for the slowest share: on a shared machine a descheduled thread stalls the product (a
 * d = 1,000 product measured 0.3-2.5 ms instead of 0.2 ms). Here the output is cut into tasks of about
 * MATVEC_TASK_FLOATS matrix entries, claimed by the caller and the workers as they become free, each a
 * one-threaded sgemv on its rows (y = A·x) or its columns (y = Aᵀ·x); a late thread holds up one task. Only
 * products of MATVEC_THREADED_MIN entries or more are split; smaller ones run on the calling thread. */
#define MATVEC_TASK_FLOATS ((size_t)1 << 16)

typedef struct {
  bool trans;
  int rows, cols, lda;
  const float *a, *x;
  float* y;
  size_t chunk, out;
} MatVec;

static void matvec_task(void* ctx, size_t t, size_t end) {
  (void)end;
  const MatVec* mv = (const MatVec*)ctx;
  const size_t b = t * mv->chunk;
  const int n = (int)(b + mv->chunk > mv->out ? mv->out - b : mv->chunk);
  if (mv->trans)
    cblas_sgemv(CblasRowMajor, CblasTrans, mv->rows, n, 1.f, mv->a + b, mv->lda, mv->x, 1, 0.f, mv->y + b, 1);
  else
    cblas_sgemv(CblasRowMajor, CblasNoTrans, n, mv->cols, 1.f, mv->a + b * (size_t)mv->lda, mv->lda, mv->x, 1, 0.f,
                mv->y + b, 1);
}

/* y = Aᵀ·x cut into blocks of consecutive rows of A instead of columns: each task streams its rows as one
 * contiguous run of memory (a column block reads a short piece of every row, which the hardware prefetchers
 * follow badly: a d = 1,000 product took 120-150 us that way against 63-70 us for A·x), into a partial sum
 * of its own; the partials are added in block order, so the result does not depend on which thread ran
 * which block. Used while the partials stay small (at most MATVEC_T_BLOCKS · cols floats). */
#define MATVEC_T_BLOCKS 32
#define MATVEC_T_MAX_COLS 65536

/* Blocks of consecutive rows for a task each: about MATVEC_TASK_FLOATS values of `row_len` (at least 16 rows),
 * at most MATVEC_T_BLOCKS blocks. Sets *block to the rows per block and returns the number of blocks. */
static size_t row_blocks(int rows, size_t row_len, int* block) {
  int b = (int)(MATVEC_TASK_FLOATS / (row_len ? row_len : 1));
  if (b < 16) b = 16;
  if ((rows + b - 1) / b > MATVEC_T_BLOCKS) b = (rows + MATVEC_T_BLOCKS - 1) / MATVEC_T_BLOCKS;
  *block = b;
  return (size_t)((rows + b - 1) / b);
}

typedef struct {
  const float* partials;
  size_t blocks, cols;
  float* y;
} PartialRows;

static void add_partial_rows(void* ctx, size_t b, size_t e) {
  const PartialRows* p = (const PartialRows*)ctx;
  float* restrict y = p->y;
  for (size_t j = b; j < e; j++) y[j] = p->partials[j];
  for (size_t t = 1; t < p->blocks; t++) {
    const float* restrict src = p->partials + t * p->cols;
    for (size_t j = b; j < e; j++) y[j] += src[j];
  }
}

static int row_block_product(bool ta, int m, int n, int k, const float* a, int lda, const float* b, int ldb, float* c,
                             int block, size_t blocks, bool threaded);

/* Returns 0 (nothing done) when the partials would be too large or there is one block. y = Aᵀ·x is the product
 * x [1, rows] · A [rows, cols]. `threaded`: the blocks on the pool, else one after the other on the calling thread
 * (the same result: the partials are added in block order either way). */
static int matvec_rows(int rows, int cols, const float* a, int lda, const float* x, float* y, bool threaded) {
  if (cols > MATVEC_T_MAX_COLS) return 0;
  int block;
  const size_t blocks = row_blocks(rows, (size_t)cols, &block);
  if (blocks < 2) return 0;
  return row_block_product(false, 1, cols, rows, x, rows, a, lda, y, block, blocks, threaded);
}

/* C [m, n] = op(A) [m, k] · B [k, n] for a few rows m (or a few columns n and k ≥ 4m): B cut into blocks of
 * consecutive rows, each task a one-threaded sgemm of A's matching columns with its block (streamed once, used
 * for all m rows) into a
 * partial product of its own, the partials added in block order (the same result whichever thread ran which
 * block). OpenBLAS's threaded sgemm took 0.8-0.9 ms for [10, 1,000]·[1,000, 1,000] (about 20 GFLOP/s), twice
 * [20, 1,000]'s time per row. Returns 0 (nothing done) outside its range. */
#define GEMM_ROWS_MAX_M 16
#define GEMM_ROWS_MAX_PARTIAL ((size_t)1 << 22)

typedef struct {
  bool ta;
  int m, n, k, lda, ldb, block;
  const float *a, *b;
  float* partials;
} GemmRows;

static void gemm_rows_task(void* ctx, size_t b, size_t e) {
  const GemmRows* g = (const GemmRows*)ctx;
  for (size_t t = b; t < e; t++) {
    const int r0 = (int)t * g->block;
    const int nb = r0 + g->block > g->k ? g->k - r0 : g->block;
    const float* a = g->ta ? g->a + (size_t)r0 * (size_t)g->lda : g->a + r0;
    const float* b0 = g->b + (size_t)r0 * (size_t)g->ldb;
    float* part = g->partials + t * (size_t)g->m * (size_t)g->n;
    /* One row: the block's rows streamed by sgemv (A's row is strided by lda when A is stored transposed). */
    if (g->m == 1)
      cblas_sgemv(CblasRowMajor, CblasTrans, nb, g->n, 1.f, b0, g->ldb, a, g->ta ? g->lda : 1, 0.f, part, 1);
    else
      cblas_sgemm(CblasRowMajor, g->ta ? CblasTrans : CblasNoTrans, CblasNoTrans, g->m, g->n, nb, 1.f, a, g->lda, b0,
                  g->ldb, 0.f, part, g->n);
  }
}

static int gemm_rows(bool ta, int m, int n, int k, const float* a, int lda, const float* b, int ldb, float* c) {
  /* A few rows, or a few columns and a long inner dimension (Xᵀ·R of a linear model's gradient, [784, 5,000]·
   * [5,000, 10]: the partials are small beside the blocks). */
  const int few_rows = m >= 2 && m <= GEMM_ROWS_MAX_M, long_inner = n >= 2 && n <= GEMM_ROWS_MAX_M && k >= 4 * m;
  if (!(few_rows || long_inner) || pool_threads() < 2 || atomic_load(&matvec_method) == 1) return 0;
  if ((size_t)k * (size_t)(few_rows ? n : m) < 2 * MATVEC_TASK_FLOATS) return 0;
  int block;
  const size_t blocks = row_blocks(k, (size_t)(few_rows ? n : m), &block), size = (size_t)m * (size_t)n;
  if (blocks < 2 || blocks * size > GEMM_ROWS_MAX_PARTIAL) return 0;
  return row_block_product(ta, m, n, k, a, lda, b, ldb, c, block, blocks, true);
}

/* C = Σ over the blocks of B's rows of op(A)[:, block] · B[block, :], a task and a partial product per block,
 * the partials added in block order (matvec_rows, gemm_rows). Returns 0 when the partials could not be
 * allocated (nothing done). */
static int row_block_product(bool ta, int m, int n, int k, const float* a, int lda, const float* b, int ldb, float* c,
                             int block, size_t blocks, bool threaded) {
  const size_t size = (size_t)m * (size_t)n;
  float* partials = (float*)malloc(blocks * size * sizeof(float));
  if (!partials) return 0;
  GemmRows g = {ta, m, n, k, lda, ldb, block, a, b, partials};
  blas_single_enter();
  if (threaded) pool_parallel_tasks(blocks, gemm_rows_task, &g);
  else gemm_rows_task(&g, 0, blocks);
  blas_single_leave();
  PartialRows p = {partials, blocks, size, c};
  if (threaded) pool_parallel_for(size, PARALLEL_GRAIN, add_partial_rows, &p);
  else add_partial_rows(&p, 0, size);
  free(partials);
  return 1;
}

/* C [m, n] = A [m, k] · op(B) [k, n] for a few columns n: A cut into blocks of consecutive rows, each task a
 * one-threaded sgemm writing its rows of C (no partial sums). OpenBLAS's threaded sgemm took about 0.95 ms for
 * [1,000, 1,000]·[1,000, 10]. Returns 0 (nothing done) outside its range. */
typedef struct {
  bool tb;
  int m, n, k, lda, ldb, block;
  const float *a, *b;
  float* c;
} GemmCols;

static void gemm_cols_task(void* ctx, size_t b, size_t e) {
  const GemmCols* g = (const GemmCols*)ctx;
  for (size_t t = b; t < e; t++) {
    const int r0 = (int)t * g->block;
    const int nb = r0 + g->block > g->m ? g->m - r0 : g->block;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, g->tb ? CblasTrans : CblasNoTrans, nb, g->n, g->k, 1.f,
                g->a + (size_t)r0 * (size_t)g->lda, g->lda, g->b, g->ldb, 0.f, g->c + (size_t)r0 * (size_t)g->n, g->n);
  }
}

static int gemm_cols(bool tb, int m, int n, int k, const float* a, int lda, const float* b, int ldb, float* c) {
  if (n < 2 || n > GEMM_ROWS_MAX_M || pool_threads() < 2 || atomic_load(&matvec_method) == 1) return 0;
  if ((size_t)m * (size_t)k < 2 * MATVEC_TASK_FLOATS) return 0;
  int block;
  const size_t blocks = row_blocks(m, (size_t)k, &block);
  if (blocks < 2) return 0;
  GemmCols g = {tb, m, n, k, lda, ldb, block, a, b, c};
  blas_single_enter();
  pool_parallel_tasks(blocks, gemm_cols_task, &g);
  blas_single_leave();
  return 1;
}

/* Products below this size are left to one plain sgemv call (OpenBLAS threads an sgemv only from 9,216
 * entries); from here to MATVEC_THREADED_MIN they run as tasks on the calling thread. */
#define MATVEC_OPENBLAS_THREADED 9216

/* Products below this many matrix entries (8 MB of floats) run on the calling thread alone (the same tasks one
 * after the other, so the same result), inside blas_single_enter so that OpenBLAS does not thread them either.
 * Such a product is bound by memory bandwidth, which one core nearly saturates, and takes 20-130 us: waking a
 * worker that went to sleep between kernels (tens of us), splitting the product and summing partials cost as
 * much as the second core saves, and a second busy core slows the JS thread's own work (V8's concurrent garbage
 * collection runs there). Measured on a 2-core
 * VM (Zen 5), each product after 30 small kernels, one thread vs the pool on two, us: 500^2 28-45 vs 88-142,
 * 1,000^2 59-67 vs 71-99, 1,500^2 115-128 vs 114-174, 2,000^2 235-289 vs 179-250, 3,000^2 743-1,174 vs 469-593.
 * Per outer step of the quadratic toy (d = 1,000), one process alternating the two thresholds (2^17 before):
 * AID-CG 0.94x the time, AID-FP 0.93x, qNBO 0.88x; ESJ unchanged (its products have 11 rows: gemm_rows). */
#define MATVEC_THREADED_MIN ((size_t)1 << 21)

/* y = A·x (trans false; A rows × cols, y rows long) or y = Aᵀ·x (trans true; y cols long), A row-major with
 * leading dimension lda. Returns 0 (nothing done) for products OpenBLAS runs on one thread anyway and when
 * the pool has one thread; the caller then runs one sgemv. */
static int matvec_pooled(bool trans, int rows, int cols, const float* a, int lda, const float* x, float* y) {
  /* Method 1 (setMatVecMethod, BILEVEL_BLAS_MATVEC=openblas) leaves every product to OpenBLAS's own threads.
   * On a quiet machine the two were within the noise of each other in the speed suite (four alternated runs
   * of the quadratic rows), the pool using less CPU time; on a loaded one the pool was 1.4-2.8x faster. */
  const size_t entries = (size_t)rows * (size_t)cols;
  if (pool_threads() < 2 || entries < MATVEC_OPENBLAS_THREADED) return 0;
  if (atomic_load(&matvec_method) == 1) return 0;
  const size_t out = (size_t)(trans ? cols : rows), inner = (size_t)(trans ? rows : cols);
  size_t chunk = MATVEC_TASK_FLOATS / inner;
  chunk = (chunk + 15) & ~(size_t)15; /* whole cache lines of y (and of A's rows when transposed) */
  if (chunk < 16) chunk = 16;
  const size_t tasks = entries < 2 * MATVEC_TASK_FLOATS ? 1 : (out + chunk - 1) / chunk;
  /* The same tasks whether threaded or not: the result does not depend on which path ran them. */
  const bool threaded = entries >= MATVEC_THREADED_MIN;
  if (trans && tasks > 1 && matvec_rows(rows, cols, a, lda, x, y, threaded)) return 1;
  MatVec mv = {trans, rows, cols, lda, a, x, y, tasks == 1 ? out : chunk, out};
  blas_single_enter();
  if (tasks == 1) matvec_task(&mv, 0, 1);
  else if (!threaded) for (size_t t = 0; t < tasks; t++) matvec_task(&mv, t, t + 1);
  else pool_parallel_tasks(tasks, matvec_task, &mv);
  blas_single_leave();
  return 1;
}

/* Least rows per tile of a product with the filter (forward, input gradient) and of Pᵀ·dy (filter gradient,
 * whose inner dimension the rows are). */
#define FORWARD_TILE_ROWS 128
#define FILTER_TILE_ROWS 512

/* Patch rows per tile: about 4 MB of patches (at least `min_rows`), and at least two tiles per thread when
 * the layer has the rows for it, so that the dynamic claiming can even out the threads. */
static size_t tile_rows(const Geom* g, size_t min_rows) {
  const size_t k = geom_k(g), m = geom_rows(g), threads = (size_t)pool_threads();
  size_t rows = ((size_t)1 << 20) / (k ? k : 1);
  if (rows < min_rows) rows = min_rows;
  const size_t balanced = (m + 2 * threads - 1) / (2 * threads);
  if (rows > balanced) rows = balanced;
  if (rows < 16) rows = 16;
  return rows < m ? rows : (m ? m : 1);
}

/* Tiles pay off when each tile's patches outweigh the filter that every tile's sgemm packs again (and, for
 * the filter gradient, the partial sum it reads and writes): at least outC rows per tile and 16 output
 * channels (a product only a few columns wide runs far below the BLAS's speed). Layers with fewer rows than
 * that (deep layers of small images, where the filter is large) keep the multi-threaded sgemm per block. */
static int use_tiles(const Geom* g, size_t min_rows) {
  return g->outC >= 16 && tile_rows(g, min_rows) >= (size_t)g->outC;
}

typedef struct {
  const Geom* g;
  const float* x;
  const float* w;
  float* y;
  size_t tile;
  atomic_int failed;
} ForwardTiles;

static void forward_tile(void* ctx, size_t b, size_t e) {
  ForwardTiles* t = (ForwardTiles*)ctx;
  const size_t K = geom_k(t->g), N = (size_t)t->g->outC, M = geom_rows(t->g);
  float* cols = thread_scratch(t->tile * K);
  if (!cols) {
    atomic_store(&t->failed, 1);
    return;
  }
  for (size_t i = b; i < e; i++) {
    const size_t r0 = i * t->tile, r1 = r0 + t->tile < M ? r0 + t->tile : M;
    im2col(t->g, t->x, r0, r1, cols);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)(r1 - r0), (int)N, (int)K, 1.f, cols, (int)K, t->w,
                (int)N, 0.f, t->y + r0 * N, (int)N);
  }
}

/* y = im2col(x)·W over tiles; returns -1 when a scratch could not be allocated. */
static int conv_forward_tiled(const Geom* g, const float* x, const float* w, float* y) {
  const size_t M = geom_rows(g);
  ForwardTiles t = {g, x, w, y, tile_rows(g, FORWARD_TILE_ROWS), 0};
  blas_single_enter();
  pool_parallel_tasks((M + t.tile - 1) / t.tile, forward_tile, &t);
  blas_single_leave();
  return atomic_load(&t.failed) ? -1 : 0;
}

/* Winograd (winograd.c) for 3×3, stride-1, dilation-1 convolutions with at least WINOGRAD_MIN_CHANNELS input
 * and output channels: the forward pass, the input gradient as the forward pass of dy with the flipped filter,
 * and the filter gradient. The method is set by setConvMethod (0 auto: as just said, F(2×2, 3×3) or F(4×4, 3×3)
 * by the rule below; 1 im2col: never Winograd; 2 winograd: F(2×2, 3×3) for every 3×3 stride-1 layer whatever its
 * channels; 3 winograd4: F(4×4, 3×3) likewise), at load from BILEVEL_BLAS_CONV=im2col|winograd|winograd4.
 *
 * The rule of `auto`: F(4×4) where its products, edge tiles included, are at most 3/4 of F(2×2)'s (36 per 4×4
 * tile against 16 per 2×2 tile), F(2×2) otherwise. Measured on the ResNet-12 layers (10 images, 2 cores, CPU ms
 * per call, forward / input gradient / filter gradient, medians of three processes that alternate the two call
 * by call; docs/performance.md, sixth round): 84×84, 64 → 64 (ratio 0.57): F(4×4) 22 / 22 / 28 against F(2×2)
 * 36 / 39 / 45; 42×42 (0.62), 160 → 160: 37 / 38 / 36 against 49 / 49 / 51; 21×21 (0.67), 320 → 320: 39 / 40 /
 * 37 against 50 / 52 / 48; but 10×10 (0.81: 3×3 tiles of 4×4 cover 12×12), 640 → 640: 54 / 67 / 46 against
 * 44 / 59 / 41. */
#define WINOGRAD_MIN_CHANNELS 16

/* The side m of Winograd's output blocks for this layer (2 or 4), or 0 for im2col. */
static int winograd_applies(const Geom* g) {
  if (g->fH != 3 || g->fW != 3 || g->sH != 1 || g->sW != 1 || g->dH != 1 || g->dW != 1) return 0;
  const int method = atomic_load(&conv_method);
  if (method != 0) return method == 2 ? 2 : method == 3 ? 4 : 0;
  if (g->inC < WINOGRAD_MIN_CHANNELS || g->outC < WINOGRAD_MIN_CHANNELS) return 0;
  const int64_t products2 = 16 * ((g->outH + 1) / 2) * ((g->outW + 1) / 2);
  const int64_t products4 = 36 * ((g->outH + 3) / 4) * ((g->outW + 3) / 4);
  return 4 * products4 <= 3 * products2 ? 4 : 2;
}

/* y = x ⋆ w by Winograd F(m×m, 3×3) (directly where x or w holds a NaN or an infinity): 0 done, -1 out of
 * memory. */
static int conv_winograd(const Geom* g, const float* x, const float* w, float* y, int m) {
  const WinogradShape s = {g->batch, g->inH, g->inW, g->inC, g->outH, g->outW, g->outC, g->padTop, g->padLeft, m};
  blas_single_enter();
  const int rc = winograd_conv3x3(&s, x, w, y, thread_scratch);
  blas_single_leave();
  return rc;
}

/* The geometry of dx as a convolution of dy (stride 1, dilation 1): the flipped filter has the channels swapped
 * and the padding fH−1−padTop, fW−1−padLeft. */
static Geom flipped_geometry(const Geom* g) {
  const Geom f = {g->batch, g->outH, g->outW, g->outC, g->inH, g->inW, g->inC, g->fH, g->fW, 1, 1, 1, 1,
                  g->fH - 1 - g->padTop, g->fW - 1 - g->padLeft};
  return f;
}

/* The flipped filter Wf[a, b, o, c] = W[fH−1−a, fW−1−b, c, o], one filter tap per index, each tap's [C, O] →
 * [O, C] transpose in blocks of 32 × 32 (the plain loop took 12–17 ms for 640 × 640 channels, its writes strided
 * by C floats, against 59 ms for the whole F(2×2) input gradient of such a layer). */
typedef struct {
  const float* w;
  float* flipped;
  size_t fH, fW, C, O;
} FlipFilter;

#define FLIP_BLOCK 32

static void flip_filter_taps(void* ctx, size_t b, size_t e) {
  const FlipFilter* f = (const FlipFilter*)ctx;
  const size_t C = f->C, O = f->O;
  for (size_t k = b; k < e; k++) {
    const size_t a = k / f->fW, t = k % f->fW;
    const float* src = f->w + ((f->fH - 1 - a) * f->fW + (f->fW - 1 - t)) * C * O;
    float* dst = f->flipped + k * O * C;
    for (size_t c0 = 0; c0 < C; c0 += FLIP_BLOCK)
      for (size_t o0 = 0; o0 < O; o0 += FLIP_BLOCK) {
        const size_t c1 = c0 + FLIP_BLOCK < C ? c0 + FLIP_BLOCK : C, o1 = o0 + FLIP_BLOCK < O ? o0 + FLIP_BLOCK : O;
        for (size_t o = o0; o < o1; o++)
          for (size_t c = c0; c < c1; c++) dst[o * C + c] = src[c * O + o];
      }
  }
}

/* dx of a stride-1, dilation-1 convolution as the convolution of dy with the flipped filter
 * Wf[a, b, o, c] = W[fH−1−a, fW−1−b, c, o]; `winograd` is the side of Winograd's output blocks, 0 for im2col. */
static int conv_input_gradient_tiled(const Geom* g, const float* dy, const float* w, float* dx, int winograd) {
  const size_t fH = (size_t)g->fH, fW = (size_t)g->fW, C = (size_t)g->inC, O = (size_t)g->outC;
  float* flipped = (float*)malloc(geom_w(g) * sizeof(float));
  if (!flipped) return -1;
  FlipFilter ff = {w, flipped, fH, fW, C, O};
  /* One tap per task when a tap is large enough to share out. */
  pool_parallel_for(fH * fW, C * O >= 65536 ? 1 : fH * fW, flip_filter_taps, &ff);
  const Geom f = flipped_geometry(g);
  const int rc = winograd ? conv_winograd(&f, dy, flipped, dx, winograd) : conv_forward_tiled(&f, dy, flipped, dx);
  free(flipped);
  return rc;
}

/* dW by Winograd F(m×m, 3×3) (directly when x or dy holds a NaN or an infinity): 0 done, -1 out of memory. */
static int conv_winograd_filter_gradient(const Geom* g, const float* x, const float* dy, float* dw, int m) {
  const WinogradShape s = {g->batch, g->inH, g->inW, g->inC, g->outH, g->outW, g->outC, g->padTop, g->padLeft, m};
  blas_single_enter();
  const int rc = winograd_filter_gradient3x3(&s, x, dy, dw, thread_scratch);
  blas_single_leave();
  return rc;
}

#define MAX_PARTIALS 65
typedef struct {
  const Geom* g;
  const float* x;
  const float* dy;
  float* dw;
  size_t tile;
  float* partials[MAX_PARTIALS]; /* slot 0 is dw itself */
  atomic_size_t next_slot;
  atomic_int failed;
} FilterTiles;

/* Tiles [b, e) into a partial sum of its own: Σ patchesᵀ·dy. */
static void filter_range(void* ctx, size_t b, size_t e) {
  FilterTiles* t = (FilterTiles*)ctx;
  const size_t K = geom_k(t->g), N = (size_t)t->g->outC, M = geom_rows(t->g);
  const size_t slot = atomic_fetch_add(&t->next_slot, 1);
  float* cols = thread_scratch(t->tile * K);
  float* acc = slot == 0 ? t->dw : (slot < MAX_PARTIALS ? (float*)malloc(K * N * sizeof(float)) : NULL);
  if (!cols || !acc) {
    atomic_store(&t->failed, 1);
    return;
  }
  t->partials[slot] = acc;
  for (size_t i = b; i < e; i++) {
    const size_t r0 = i * t->tile, r1 = r0 + t->tile < M ? r0 + t->tile : M;
    im2col(t->g, t->x, r0, r1, cols);
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)K, (int)N, (int)(r1 - r0), 1.f, cols, (int)K,
                t->dy + r0 * N, (int)N, i == b ? 0.f : 1.f, acc, (int)N);
  }
}

typedef struct {
  float* dw;
  float* const* partials;
  size_t count;
} PartialSum;

static void add_partials(void* ctx, size_t b, size_t e) {
  const PartialSum* p = (const PartialSum*)ctx;
  for (size_t s = 1; s < p->count; s++) {
    const float* src = p->partials[s];
    for (size_t i = b; i < e; i++) p->dw[i] += src[i];
  }
}

/* dW = Σ patchesᵀ·dy: each thread's share of the tiles into a partial sum, then the partial sums added. */
static int conv_filter_gradient_tiled(const Geom* g, const float* x, const float* dy, float* dw) {
  const size_t M = geom_rows(g), K = geom_k(g), N = (size_t)g->outC;
  FilterTiles t;
  memset(&t, 0, sizeof t);
  t.g = g, t.x = x, t.dy = dy, t.dw = dw, t.tile = tile_rows(g, FILTER_TILE_ROWS);
  atomic_store(&t.next_slot, 0);
  atomic_store(&t.failed, 0);
  blas_single_enter();
  pool_parallel_for((M + t.tile - 1) / t.tile, 1, filter_range, &t);
  blas_single_leave();
  size_t count = atomic_load(&t.next_slot);
  if (count > MAX_PARTIALS) count = MAX_PARTIALS;
  int rc = atomic_load(&t.failed) ? -1 : 0;
  if (rc == 0 && count > 1) {
    PartialSum p = {dw, t.partials, count};
    pool_parallel_for(K * N, PARALLEL_GRAIN, add_partials, &p);
  }
  for (size_t s = 1; s < count; s++) free(t.partials[s]);
  return rc;
}
#else
/* Accelerate threads its own products. */
static int matvec_pooled(bool trans, int rows, int cols, const float* a, int lda, const float* x, float* y) {
  (void)trans, (void)rows, (void)cols, (void)a, (void)lda, (void)x, (void)y;
  return 0;
}
static int gemm_rows(bool ta, int m, int n, int k, const float* a, int lda, const float* b, int ldb, float* c) {
  (void)ta, (void)m, (void)n, (void)k, (void)a, (void)lda, (void)b, (void)ldb, (void)c;
  return 0;
}
static int gemm_cols(bool tb, int m, int n, int k, const float* a, int lda, const float* b, int ldb, float* c) {
  (void)tb, (void)m, (void)n, (void)k, (void)a, (void)lda, (void)b, (void)ldb, (void)c;
  return 0;
}
#endif

/* conv2d(x, filter, out, geometry, bias, activation, alpha) */
static napi_value js_conv2d(napi_env env, napi_callback_info info) {
  const char* fn = "conv2d";
  napi_value argv[7];
  float *x, *w, *y, *bias;
  size_t lx, lw, ly;
  Geom g;
  int act;
  float alpha;
  if (get_args(env, info, 7, argv, fn)) return NULL;
  if (arg_f32(env, argv[0], fn, "x", 0, &x, &lx) || arg_f32(env, argv[1], fn, "filter", 0, &w, &lw) ||
      arg_f32(env, argv[2], fn, "out", 0, &y, &ly) || arg_geom(env, argv[3], fn, &g))
    return NULL;
  if (arg_epilogue(env, argv + 4, fn, (size_t)g.outC, &bias, &act, &alpha)) return NULL;
  if (lx != geom_x(&g) || lw != geom_w(&g) || ly != geom_y(&g))
    return throw_error(env, fn, "x, filter or out does not match the geometry"), NULL;
  const size_t M = geom_rows(&g), K = geom_k(&g), N = (size_t)g.outC;
  if (M == 0 || N == 0) return NULL;
  if (K == 0) {
    memset(y, 0, ly * sizeof(float));
  } else if (geom_is_pointwise(&g)) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)M, (int)N, (int)K, 1.f, x, (int)K, w, (int)N, 0.f, y,
                (int)N);
  } else {
#ifdef CONV_TILED
    const int winograd = winograd_applies(&g);
    if (winograd) {
      if (conv_winograd(&g, x, w, y, winograd))
        return throw_error(env, fn, "out of memory for the transformed input"), NULL;
      epilogue(y, M, N, bias, act, alpha);
      return NULL;
    }
    if (use_tiles(&g, FORWARD_TILE_ROWS)) {
      if (conv_forward_tiled(&g, x, w, y)) return throw_error(env, fn, "out of memory for the patch matrix"), NULL;
      epilogue(y, M, N, bias, act, alpha);
      return NULL;
    }
#endif
    const size_t rb = block_rows(&g);
    float* cols = (float*)malloc(rb * K * sizeof(float));
    if (!cols) return throw_error(env, fn, "out of memory for the patch matrix"), NULL;
    for (size_t r0 = 0; r0 < M; r0 += rb) {
      const size_t r1 = r0 + rb < M ? r0 + rb : M;
      im2col_parallel(&g, x, r0, r1, cols);
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)(r1 - r0), (int)N, (int)K, 1.f, cols, (int)K, w,
                  (int)N, 0.f, y + r0 * N, (int)N);
    }
    free(cols);
  }
  epilogue(y, M, N, bias, act, alpha);
  return NULL;
}

/* conv2dBackpropInput(dy, filter, dx, geometry): geometry of the forward convolution whose input is dx. */
static napi_value js_conv2d_backprop_input(napi_env env, napi_callback_info info) {
  const char* fn = "conv2dBackpropInput";
  napi_value argv[4];
  float *dy, *w, *dx;
  size_t ldy, lw, ldx;
  Geom g;
  if (get_args(env, info, 4, argv, fn)) return NULL;
  if (arg_f32(env, argv[0], fn, "dy", 0, &dy, &ldy) || arg_f32(env, argv[1], fn, "filter", 0, &w, &lw) ||
      arg_f32(env, argv[2], fn, "dx", 0, &dx, &ldx) || arg_geom(env, argv[3], fn, &g))
    return NULL;
  if (ldx != geom_x(&g) || lw != geom_w(&g) || ldy != geom_y(&g))
    return throw_error(env, fn, "dy, filter or dx does not match the geometry"), NULL;
  const size_t M = geom_rows(&g), K = geom_k(&g), N = (size_t)g.outC;
  if (M == 0 || K == 0 || N == 0) {
    memset(dx, 0, ldx * sizeof(float));
    return NULL;
  }
  if (geom_is_pointwise(&g)) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)M, (int)K, (int)N, 1.f, dy, (int)N, w, (int)N, 0.f, dx,
                (int)K);
    return NULL;
  }
#ifdef CONV_TILED
  const Geom flipped = flipped_geometry(&g);
  const int winograd = winograd_applies(&flipped);
  if (g.sH == 1 && g.sW == 1 && g.dH == 1 && g.dW == 1 && (winograd || use_tiles(&flipped, FORWARD_TILE_ROWS))) {
    if (conv_input_gradient_tiled(&g, dy, w, dx, winograd)) return throw_error(env, fn, "out of memory for the patch matrix"), NULL;
    return NULL;
  }
#endif
  memset(dx, 0, ldx * sizeof(float));
  const size_t rb = block_rows(&g);
  float* cols = (float*)malloc(rb * K * sizeof(float));
  if (!cols) return throw_error(env, fn, "out of memory for the patch matrix"), NULL;
  for (size_t r0 = 0; r0 < M; r0 += rb) {
    const size_t r1 = r0 + rb < M ? r0 + rb : M;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)(r1 - r0), (int)K, (int)N, 1.f, dy + r0 * N, (int)N, w,
                (int)N, 0.f, cols, (int)K);
    col2im_add_parallel(&g, cols, r0, r1, dx);
  }
  free(cols);
  return NULL;
}

/* conv2dBackpropFilter(x, dy, dw, geometry) */
static napi_value js_conv2d_backprop_filter(napi_env env, napi_callback_info info) {
  const char* fn = "conv2dBackpropFilter";
  napi_value argv[4];
  float *x, *dy, *dw;
  size_t lx, ldy, ldw;
  Geom g;
  if (get_args(env, info, 4, argv, fn)) return NULL;
  if (arg_f32(env, argv[0], fn, "x", 0, &x, &lx) || arg_f32(env, argv[1], fn, "dy", 0, &dy, &ldy) ||
      arg_f32(env, argv[2], fn, "dw", 0, &dw, &ldw) || arg_geom(env, argv[3], fn, &g))
    return NULL;
  if (lx != geom_x(&g) || ldw != geom_w(&g) || ldy != geom_y(&g))
    return throw_error(env, fn, "x, dy or dw does not match the geometry"), NULL;
  const size_t M = geom_rows(&g), K = geom_k(&g), N = (size_t)g.outC;
  if (K == 0 || N == 0) return NULL;
  if (M == 0) {
    memset(dw, 0, ldw * sizeof(float));
    return NULL;
  }
  if (geom_is_pointwise(&g)) {
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)K, (int)N, (int)M, 1.f, x, (int)K, dy, (int)N, 0.f, dw,
                (int)N);
    return NULL;
  }
#ifdef CONV_TILED
  const int winograd = winograd_applies(&g);
  if (winograd) {
    if (conv_winograd_filter_gradient(&g, x, dy, dw, winograd))
      return throw_error(env, fn, "out of memory for the transformed input"), NULL;
    return NULL;
  }
  if (use_tiles(&g, FILTER_TILE_ROWS)) {
    if (conv_filter_gradient_tiled(&g, x, dy, dw)) return throw_error(env, fn, "out of memory for the patch matrix"), NULL;
    return NULL;
  }
#endif
  const size_t rb = block_rows(&g);
  float* cols = (float*)malloc(rb * K * sizeof(float));
  if (!cols) return throw_error(env, fn, "out of memory for the patch matrix"), NULL;
  for (size_t r0 = 0; r0 < M; r0 += rb) {
    const size_t r1 = r0 + rb < M ? r0 + rb : M;
    im2col_parallel(&g, x, r0, r1, cols);
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)K, (int)N, (int)(r1 - r0), 1.f, cols, (int)K,
                dy + r0 * N, (int)N, r0 == 0 ? 0.f : 1.f, dw, (int)N);
  }
  free(cols);
  return NULL;
}

/* ---------------------------------------------------------------------------------------------- */
/* Elementwise binary ops with broadcasting, reductions and max pooling: the kernels that dominate once the
 * products are native (the JS cpu backend broadcasts and reduces through per-element index arithmetic). */

#define MAX_RANK 8

enum {
  BIN_ADD = 0, BIN_SUB = 1, BIN_MUL = 2, BIN_DIV = 3, BIN_MAX = 4, BIN_MIN = 5, BIN_SQDIFF = 6,
  CMP_EQ = 100, CMP_NE = 101, CMP_LT = 102, CMP_LE = 103, CMP_GT = 104, CMP_GE = 105
};

static inline float bin_apply(int op, float a, float b) {
  switch (op) {
    case BIN_ADD: return a + b;
    case BIN_SUB: return a - b;
    case BIN_MUL: return a * b;
    case BIN_DIV: return a / b;
    /* JS Math.max / Math.min: NaN if either is NaN. */
    case BIN_MAX: return (a != a || b != b) ? NAN : (a > b ? a : b);
    case BIN_MIN: return (a != a || b != b) ? NAN : (a < b ? a : b);
    case BIN_SQDIFF: { const float d = a - b; return d * d; }
    default: return NAN;
  }
}

static inline uint8_t cmp_apply(int op, float a, float b) {
  switch (op) {
    case CMP_EQ: return a == b;
    case CMP_NE: return a != b;
    case CMP_LT: return a < b;
    case CMP_LE: return a <= b;
    case CMP_GT: return a > b;
    case CMP_GE: return a >= b;
    default: return 0;
  }
}

/* One inner run of length n with element steps sa, sb (0 or 1 after collapsing, or any stride). */
VECTOR_CLONES
static void bin_run(int op, const float* a, int64_t sa, const float* b, int64_t sb, float* o, int64_t n) {
#define RUN(EXPR)                                                                                  \
  if (sa == 1 && sb == 1) { for (int64_t i = 0; i < n; i++) { const float x = a[i], y = b[i]; o[i] = (EXPR); } } \
  else if (sa == 1 && sb == 0) { const float y = b[0]; for (int64_t i = 0; i < n; i++) { const float x = a[i]; o[i] = (EXPR); } } \
  else if (sa == 0 && sb == 1) { const float x = a[0]; for (int64_t i = 0; i < n; i++) { const float y = b[i]; o[i] = (EXPR); } } \
  else { for (int64_t i = 0; i < n; i++) { const float x = a[i * sa], y = b[i * sb]; o[i] = (EXPR); } }
  switch (op) {
    case BIN_ADD: RUN(x + y) break;
    case BIN_SUB: RUN(x - y) break;
    case BIN_MUL: RUN(x * y) break;
    case BIN_DIV: RUN(x / y) break;
    case BIN_MAX: RUN((x != x || y != y) ? NAN : (x > y ? x : y)) break;
    case BIN_MIN: RUN((x != x || y != y) ? NAN : (x < y ? x : y)) break;
    case BIN_SQDIFF: RUN((x - y) * (x - y)) break;
    default: RUN(bin_apply(op, x, y)) break;
  }
#undef RUN
}

/* A binary op over a collapsed layout, split by element ranges for the thread pool. */
typedef struct {
  int op, compare;
  const float *a, *b;
  void* out;
  size_t rank;
  int64_t shape[MAX_RANK], sa[MAX_RANK], sb[MAX_RANK];
} BinTask;

VECTOR_CLONES
static void cmp_run(int op, const float* a, int64_t sa, const float* b, int64_t sb, uint8_t* o, int64_t n) {
  for (int64_t i = 0; i < n; i++) o[i] = cmp_apply(op, a[i * sa], b[i * sb]);
}

/* Elements [begin, end) of the output: the odometer starts at `begin` and walks whole or partial runs. */
static void bin_range(void* ctx, size_t begin, size_t end) {
  const BinTask* t = (const BinTask*)ctx;
  const size_t r = t->rank;
  const int64_t n = t->shape[r - 1];
  int64_t idx[MAX_RANK] = {0};
  size_t run = begin / (size_t)n;
  int64_t i0 = (int64_t)(begin % (size_t)n);
  int64_t ao = i0 * t->sa[r - 1], bo = i0 * t->sb[r - 1];
  for (int64_t d = (int64_t)r - 2; d >= 0; d--) {
    idx[d] = (int64_t)(run % (size_t)t->shape[d]);
    run /= (size_t)t->shape[d];
    ao += idx[d] * t->sa[d];
    bo += idx[d] * t->sb[d];
  }
  size_t pos = begin;
  while (pos < end) {
    const int64_t len = (int64_t)(end - pos) < n - i0 ? (int64_t)(end - pos) : n - i0;
    if (t->compare)
      cmp_run(t->op, t->a + ao, t->sa[r - 1], t->b + bo, t->sb[r - 1], (uint8_t*)t->out + pos, len);
    else
      bin_run(t->op, t->a + ao, t->sa[r - 1], t->b + bo, t->sb[r - 1], (float*)t->out + pos, len);
    pos += (size_t)len;
    ao -= i0 * t->sa[r - 1];
    bo -= i0 * t->sb[r - 1];
    i0 = 0;
    for (int64_t d = (int64_t)r - 2; d >= 0; d--) {
      idx[d]++;
      ao += t->sa[d];
      bo += t->sb[d];
      if (idx[d] < t->shape[d]) break;
      ao -= t->sa[d] * idx[d];
      bo -= t->sb[d] * idx[d];
      idx[d] = 0;
    }
  }
}

/* binary(op, a, aStrides, b, bStrides, out, shape): out[i] = a[i] ∘ b[i] over `shape`, where an operand's
 * stride is 0 along the dims it is broadcast over. out is a Float32Array, or a Uint8Array for comparisons. */
static napi_value js_binary(napi_env env, napi_callback_info info) {
  const char* fn = "binary";
  napi_value argv[7];
  int64_t op;
  float *a, *b;
  size_t la, lb, lsa, lsb, lshape;
  int32_t *sa, *sb, *shape;
  if (get_args(env, info, 7, argv, fn)) return NULL;
  if (arg_int(env, argv[0], fn, "op", 0, &op) || arg_f32(env, argv[1], fn, "a", 0, &a, &la) ||
      arg_i32(env, argv[2], fn, "aStrides", &sa, &lsa) || arg_f32(env, argv[3], fn, "b", 0, &b, &lb) ||
      arg_i32(env, argv[4], fn, "bStrides", &sb, &lsb) || arg_i32(env, argv[6], fn, "shape", &shape, &lshape))
    return NULL;
  const int compare = op >= CMP_EQ;
  if ((!compare && op > BIN_SQDIFF) || op > CMP_GE) return throw_error(env, fn, "unknown op"), NULL;
  const size_t rank = lshape;
  if (rank < 1 || rank > MAX_RANK || lsa != rank || lsb != rank)
    return throw_error(env, fn, "shape and strides must have the same rank, 1 to 8"), NULL;
  /* out: Float32Array (arithmetic) or Uint8Array (comparisons). */
  napi_typedarray_type otype;
  size_t lo;
  void* optr;
  napi_value obuf;
  size_t ooff;
  bool is_ta = false;
  napi_is_typedarray(env, argv[5], &is_ta);
  if (!is_ta || napi_get_typedarray_info(env, argv[5], &otype, &lo, &optr, &obuf, &ooff) != napi_ok ||
      otype != (compare ? napi_uint8_array : napi_float32_array))
    return throw_error(env, fn, compare ? "out must be a Uint8Array" : "out must be a Float32Array"), NULL;
  size_t total = 1;
  int64_t amax = 0, bmax = 0;
  for (size_t d = 0; d < rank; d++) {
    if (shape[d] < 0 || sa[d] < 0 || sb[d] < 0) return throw_error(env, fn, "negative shape or stride"), NULL;
    total *= (size_t)shape[d];
    if (shape[d] > 0) amax += (int64_t)sa[d] * (shape[d] - 1), bmax += (int64_t)sb[d] * (shape[d] - 1);
  }
  if (lo != total) return throw_error(env, fn, "out does not match the shape"), NULL;
  if (total == 0) return NULL;
  if ((size_t)amax >= la || (size_t)bmax >= lb) return throw_error(env, fn, "a or b is too small for its strides"), NULL;
  BinTask t = {(int)op, compare, a, b, optr, rank, {0}, {0}, {0}};
  for (size_t d = 0; d < rank; d++) t.shape[d] = shape[d], t.sa[d] = sa[d], t.sb[d] = sb[d];
  pool_parallel_for(total, PARALLEL_GRAIN, bin_range, &t);
  return NULL;
}

enum { RED_SUM = 0, RED_MEAN = 1, RED_MAX = 2, RED_MIN = 3 };

/* A reduction split into parts of consecutive runs (rows of the innermost dim), each part into an
 * accumulator of its own (acc + part·outTotal). */
typedef struct {
  int op;
  const float* x;
  size_t rank;
  int64_t shape[MAX_RANK], ostride[MAX_RANK];
  int64_t n;
  int inner_reduced;
  size_t runs, parts;
  double* acc;
  size_t outTotal;
} ReduceTask;

static void reduce_part(void* ctx, size_t pb, size_t pe) {
  const ReduceTask* t = (const ReduceTask*)ctx;
  const int op = t->op;
  const int64_t n = t->n;
  for (size_t part = pb; part < pe; part++) {
    double* acc = t->acc + part * t->outTotal;
    const double init = op == RED_MAX ? -INFINITY : op == RED_MIN ? INFINITY : 0.0;
    for (size_t i = 0; i < t->outTotal; i++) acc[i] = init;
    const size_t r0 = t->runs * part / t->parts, r1 = t->runs * (part + 1) / t->parts;
    /* Odometer over the dims before the innermost, started at run r0. */
    int64_t idx[MAX_RANK] = {0};
    int64_t oo = 0;
    size_t rest = r0;
    for (int64_t d = (int64_t)t->rank - 2; d >= 0; d--) {
      idx[d] = (int64_t)(rest % (size_t)t->shape[d]);
      rest /= (size_t)t->shape[d];
      oo += idx[d] * t->ostride[d];
    }
    for (size_t r = r0; r < r1; r++) {
      const float* xr = t->x + r * (size_t)n;
      if (t->inner_reduced) {
        double v = acc[oo];
        if (op == RED_SUM || op == RED_MEAN) {
          /* Four chains of double additions (one chain waits on each add's latency: 1,000 floats took 4 us). */
          double v1 = 0.0, v2 = 0.0, v3 = 0.0;
          int64_t i = 0;
          for (; i + 4 <= n; i += 4) v += xr[i], v1 += xr[i + 1], v2 += xr[i + 2], v3 += xr[i + 3];
          for (; i < n; i++) v += xr[i];
          v += (v1 + v2) + v3;
        } else if (op == RED_MAX) {
          for (int64_t i = 0; i < n; i++) if (xr[i] != xr[i] || xr[i] > v) v = xr[i];
        } else {
          for (int64_t i = 0; i < n; i++) if (xr[i] != xr[i] || xr[i] < v) v = xr[i];
        }
        acc[oo] = v;
      } else {
        double* ar = acc + oo;
        if (op == RED_SUM || op == RED_MEAN) {
          for (int64_t i = 0; i < n; i++) ar[i] += xr[i];
        } else if (op == RED_MAX) {
          for (int64_t i = 0; i < n; i++) if (xr[i] != xr[i] || xr[i] > ar[i]) ar[i] = xr[i];
        } else {
          for (int64_t i = 0; i < n; i++) if (xr[i] != xr[i] || xr[i] < ar[i]) ar[i] = xr[i];
        }
      }
      for (int64_t d = (int64_t)t->rank - 2; d >= 0; d--) {
        idx[d]++;
        oo += t->ostride[d];
        if (idx[d] < t->shape[d]) break;
        oo -= t->ostride[d] * idx[d];
        idx[d] = 0;
      }
    }
  }
}

/* reduce(op, x, shape, reduced, out): out = op over the dims flagged in `reduced` (0/1 per dim), in double
 * precision; max and min propagate NaN (as the JS kernels do). */
static napi_value js_reduce(napi_env env, napi_callback_info info) {
  const char* fn = "reduce";
  napi_value argv[5];
  int64_t op;
  float *x, *out;
  size_t lx, lo, lshape, lred;
  int32_t *shape, *red;
  if (get_args(env, info, 5, argv, fn)) return NULL;
  if (arg_int(env, argv[0], fn, "op", 0, &op) || arg_f32(env, argv[1], fn, "x", 0, &x, &lx) ||
      arg_i32(env, argv[2], fn, "shape", &shape, &lshape) || arg_i32(env, argv[3], fn, "reduced", &red, &lred) ||
      arg_f32(env, argv[4], fn, "out", 0, &out, &lo))
    return NULL;
  if (op > RED_MIN) return throw_error(env, fn, "unknown op"), NULL;
  const size_t rank = lshape;
  if (rank < 1 || rank > MAX_RANK || lred != rank) return throw_error(env, fn, "shape and flags must have rank 1 to 8"), NULL;
  size_t total = 1, outTotal = 1;
  int64_t ostride[MAX_RANK];
  for (int64_t d = (int64_t)rank - 1; d >= 0; d--) {
    if (shape[d] < 1) return throw_error(env, fn, "empty dimensions are not reduced natively"), NULL;
    total *= (size_t)shape[d];
    ostride[d] = red[d] ? 0 : (int64_t)outTotal;
    if (!red[d]) outTotal *= (size_t)shape[d];
  }
  if (lx != total || lo != outTotal) return throw_error(env, fn, "x or out does not match the shape"), NULL;
  const int64_t n = shape[rank - 1];
  const size_t runs = total / (size_t)n;
  /* Threaded when the reduction is large and shrinks the data well (each part has an accumulator of the
   * output's size); the runs are cut into one part per thread, and the parts' sums added in part order, so
   * the result does not depend on which thread ran which part. */
  size_t parts = (size_t)pool_threads();
  if (parts > runs) parts = runs;
  if (parts < 2 || total < 4 * PARALLEL_GRAIN || outTotal * 8 > total) parts = 1;
  ReduceTask t = {(int)op, x, rank, {0}, {0}, n, red[rank - 1] != 0, runs, parts, NULL, outTotal};
  for (size_t d = 0; d < rank; d++) t.shape[d] = shape[d], t.ostride[d] = ostride[d];
  t.acc = (double*)malloc(parts * outTotal * sizeof(double));
  if (!t.acc) return throw_error(env, fn, "out of memory"), NULL;
  if (parts == 1) reduce_part(&t, 0, 1);
  else pool_parallel_tasks(parts, reduce_part, &t);
  double* acc = t.acc;
  for (size_t p = 1; p < parts; p++) {
    const double* src = t.acc + p * outTotal;
    if (op == RED_SUM || op == RED_MEAN) {
      for (size_t i = 0; i < outTotal; i++) acc[i] += src[i];
    } else if (op == RED_MAX) {
      for (size_t i = 0; i < outTotal; i++) if (src[i] != src[i] || src[i] > acc[i]) acc[i] = src[i];
    } else {
      for (size_t i = 0; i < outTotal; i++) if (src[i] != src[i] || src[i] < acc[i]) acc[i] = src[i];
    }
  }
  const double scale = op == RED_MEAN ? (double)outTotal / (double)total : 1.0;
  for (size_t i = 0; i < outTotal; i++) out[i] = (float)(op == RED_MEAN ? acc[i] * scale : acc[i]);
  free(acc);
  return NULL;
}

/* Pooling geometry (NHWC, dilation 1), 12 int32 values:
 * batch, inH, inW, C, outH, outW, fH, fW, strideH, strideW, padTop, padLeft. */
typedef struct {
  int64_t batch, inH, inW, C, outH, outW, fH, fW, sH, sW, padTop, padLeft;
} Pool;

static int arg_pool(napi_env env, napi_value v, const char* fn, Pool* p) {
  int32_t* g;
  size_t len;
  if (arg_i32(env, v, fn, "geometry", &g, &len)) return -1;
  if (len != 12) return throw_error(env, fn, "geometry must hold 12 values");
  for (int i = 0; i < 10; i++)
    if (g[i] < (i < 6 ? 0 : 1)) return throw_error(env, fn, "geometry has a negative size or a zero stride");
  p->batch = g[0], p->inH = g[1], p->inW = g[2], p->C = g[3], p->outH = g[4], p->outW = g[5], p->fH = g[6];
  p->fW = g[7], p->sH = g[8], p->sW = g[9], p->padTop = g[10], p->padLeft = g[11];
  return 0;
}

/* Pooling on the worker pool: the forward by output rows (n, oy), which write disjoint outputs; the gradient by
 * output rows when windows never overlap vertically (stride >= window height: distinct rows scatter into
 * distinct input rows), else by images. Each output row is computed as before, in the same order, so the
 * results do not depend on the split. */
typedef struct {
  const Pool* p;
  const float *x, *dy;
  float* out;
  int by_rows;
  atomic_int* failed; /* set by a unit that could not allocate its scratch (the gradient) */
} PoolTask;

/* Work per output row, in window-element visits, for the grain of the split. */
static size_t pool_row_work(const Pool* p) {
  const size_t w = (size_t)(p->outW * p->fH * p->fW * p->C);
  return w ? w : 1;
}

static void max_pool_rows(void* ctx, size_t r0, size_t r1) {
  const PoolTask* t = (const PoolTask*)ctx;
  const Pool* p = t->p;
  const size_t C = (size_t)p->C;
  for (size_t r = r0; r < r1; r++) {
    const int64_t b = (int64_t)r / p->outH, oy = (int64_t)r % p->outH;
    const float* img = t->x + (size_t)(b * p->inH * p->inW) * C;
    const int64_t y0 = oy * p->sH - p->padTop;
    const int64_t ya = y0 < 0 ? 0 : y0, yb = y0 + p->fH < p->inH ? y0 + p->fH : p->inH;
    for (int64_t ox = 0; ox < p->outW; ox++) {
      const int64_t x0 = ox * p->sW - p->padLeft;
      const int64_t xa = x0 < 0 ? 0 : x0, xb = x0 + p->fW < p->inW ? x0 + p->fW : p->inW;
      float* o = t->out + (size_t)((b * p->outH + oy) * p->outW + ox) * C;
      for (size_t c = 0; c < C; c++) o[c] = -INFINITY;
      for (int64_t iy = ya; iy < yb; iy++)
        for (int64_t ix = xa; ix < xb; ix++) {
          const float* v = img + (size_t)(iy * p->inW + ix) * C;
          for (size_t c = 0; c < C; c++) o[c] = v[c] > o[c] ? v[c] : o[c];
        }
    }
  }
}

/* maxPool(x, out, geometry): the max over each window's in-bounds pixels (NaN never wins, as in the JS
 * kernel); -Infinity for a window with none. */
static napi_value js_max_pool(napi_env env, napi_callback_info info) {
  const char* fn = "maxPool";
  napi_value argv[3];
  float *x, *y;
  size_t lx, ly;
  Pool p;
  if (get_args(env, info, 3, argv, fn)) return NULL;
  if (arg_f32(env, argv[0], fn, "x", 0, &x, &lx) || arg_f32(env, argv[1], fn, "out", 0, &y, &ly) ||
      arg_pool(env, argv[2], fn, &p))
    return NULL;
  const size_t C = (size_t)p.C;
  if (lx != (size_t)(p.batch * p.inH * p.inW) * C || ly != (size_t)(p.batch * p.outH * p.outW) * C)
    return throw_error(env, fn, "x or out does not match the geometry"), NULL;
  PoolTask t = {&p, x, NULL, y, 1, NULL};
  pool_parallel_for((size_t)(p.batch * p.outH), PARALLEL_GRAIN / pool_row_work(&p) + 1, max_pool_rows, &t);
  return NULL;
}

static void zero_range(void* ctx, size_t b, size_t e) { memset((float*)ctx + b, 0, (e - b) * sizeof(float)); }

/* Units [u0, u1) of the gradient: output rows (by_rows) or whole images. */
static void max_pool_grad_units(void* ctx, size_t u0, size_t u1) {
  const PoolTask* t = (const PoolTask*)ctx;
  const Pool* p = t->p;
  const size_t C = (size_t)p->C;
  float* best = (float*)malloc(C * sizeof(float));
  int64_t* where = (int64_t*)malloc(C * sizeof(int64_t));
  if (!best || !where) {
    free(best);
    free(where);
    atomic_store(t->failed, 1);
    return;
  }
  const size_t rows = t->by_rows ? 1 : (size_t)p->outH;
  for (size_t r = u0 * rows; r < u1 * rows; r++) {
    const int64_t b = (int64_t)r / p->outH, oy = (int64_t)r % p->outH;
    const size_t base = (size_t)(b * p->inH * p->inW) * C;
    const int64_t y0 = oy * p->sH - p->padTop;
    const int64_t ya = y0 < 0 ? 0 : y0, yb = y0 + p->fH < p->inH ? y0 + p->fH : p->inH;
    for (int64_t ox = 0; ox < p->outW; ox++) {
      const int64_t x0 = ox * p->sW - p->padLeft;
      const int64_t xa = x0 < 0 ? 0 : x0, xb = x0 + p->fW < p->inW ? x0 + p->fW : p->inW;
      for (size_t c = 0; c < C; c++) best[c] = -INFINITY, where[c] = -1;
      for (int64_t iy = ya; iy < yb; iy++)
        for (int64_t ix = xa; ix < xb; ix++) {
          const size_t off = base + (size_t)(iy * p->inW + ix) * C;
          const float* v = t->x + off;
          for (size_t c = 0; c < C; c++)
            if (v[c] > best[c]) best[c] = v[c], where[c] = (int64_t)(off + c);
        }
      const float* g = t->dy + (size_t)((b * p->outH + oy) * p->outW + ox) * C;
      for (size_t c = 0; c < C; c++)
        if (where[c] >= 0) t->out[where[c]] += g[c];
    }
  }
  free(best);
  free(where);
}

/* Output rows [r0, r1) of the gradient when windows never overlap (stride >= window, both ways): each output row
 * owns a band of input rows, which it zeroes and then fills window by window — per channel the index of the
 * first strictly greater pixel (in the window's row-major order, as below), then every pixel of the window
 * written at once: 0 + dy at that index (as the scatter's dx += dy on zeros gives), 0 elsewhere. No scatter
 * and no separate zeroing pass; both loops run over contiguous channels. */
VECTOR_CLONES
static void max_pool_grad_window(const float* const* px, int n, const float* restrict g, float* const* pdx, size_t C,
                                 float* restrict best, int32_t* restrict idx) {
  for (size_t c = 0; c < C; c++) best[c] = -INFINITY, idx[c] = -1;
  for (int k = 0; k < n; k++) {
    const float* restrict v = px[k];
    for (size_t c = 0; c < C; c++) {
      const int gt = v[c] > best[c];
      best[c] = gt ? v[c] : best[c];
      idx[c] = gt ? k : idx[c];
    }
  }
  for (int k = 0; k < n; k++) {
    float* restrict d = pdx[k];
    for (size_t c = 0; c < C; c++) d[c] = idx[c] == k ? 0.f + g[c] : 0.f;
  }
}

static void max_pool_grad_disjoint(void* ctx, size_t r0, size_t r1) {
  const PoolTask* t = (const PoolTask*)ctx;
  const Pool* p = t->p;
  const size_t C = (size_t)p->C;
  const int window = (int)(p->fH * p->fW);
  float* best = (float*)malloc(C * sizeof(float));
  int32_t* idx = (int32_t*)malloc(C * sizeof(int32_t));
  const float** px = (const float**)malloc((size_t)window * sizeof(float*));
  float** pdx = (float**)malloc((size_t)window * sizeof(float*));
  if (!best || !idx || !px || !pdx) {
    free(best), free(idx), free(px), free(pdx);
    atomic_store(t->failed, 1);
    return;
  }
  for (size_t r = r0; r < r1; r++) {
    const int64_t b = (int64_t)r / p->outH, oy = (int64_t)r % p->outH;
    const size_t base = (size_t)(b * p->inH * p->inW) * C;
    const int64_t y0 = oy * p->sH - p->padTop;
    /* This row's band of input rows: from its window's top (0 for the first row) to the next row's (inH for
     * the last); the bands of an image's output rows cover its input rows once. */
    const int64_t bandTop = oy == 0 ? 0 : (y0 < 0 ? 0 : y0);
    const int64_t bandEnd = oy == p->outH - 1 ? p->inH : (y0 + p->sH < p->inH ? y0 + p->sH : p->inH);
    if (bandEnd > bandTop) memset(t->out + base + (size_t)(bandTop * p->inW) * C, 0, (size_t)((bandEnd - bandTop) * p->inW) * C * sizeof(float));
    const int64_t ya = y0 < 0 ? 0 : y0, yb = y0 + p->fH < p->inH ? y0 + p->fH : p->inH;
    for (int64_t ox = 0; ox < p->outW; ox++) {
      const int64_t x0 = ox * p->sW - p->padLeft;
      const int64_t xa = x0 < 0 ? 0 : x0, xb = x0 + p->fW < p->inW ? x0 + p->fW : p->inW;
      int n = 0;
      for (int64_t iy = ya; iy < yb; iy++)
        for (int64_t ix = xa; ix < xb; ix++, n++) {
          const size_t off = base + (size_t)(iy * p->inW + ix) * C;
          px[n] = t->x + off;
          pdx[n] = t->out + off;
        }
      if (n > 0) max_pool_grad_window(px, n, t->dy + (size_t)((b * p->outH + oy) * p->outW + ox) * C, pdx, C, best, idx);
    }
  }
  free(best), free(idx), free(px), free(pdx);
}

/* maxPoolGrad(dy, x, dx, geometry): each window's dy goes to its max pixel — the first strictly greater one
 * in row-major window order, as the JS kernel picks it; a window without one (all -Infinity or NaN) passes
 * nothing. */
static napi_value js_max_pool_grad(napi_env env, napi_callback_info info) {
  const char* fn = "maxPoolGrad";
  napi_value argv[4];
  float *dy, *x, *dx;
  size_t ldy, lx, ldx;
  Pool p;
  if (get_args(env, info, 4, argv, fn)) return NULL;
  if (arg_f32(env, argv[0], fn, "dy", 0, &dy, &ldy) || arg_f32(env, argv[1], fn, "x", 0, &x, &lx) ||
      arg_f32(env, argv[2], fn, "dx", 0, &dx, &ldx) || arg_pool(env, argv[3], fn, &p))
    return NULL;
  const size_t C = (size_t)p.C;
  if (lx != (size_t)(p.batch * p.inH * p.inW) * C || ldx != lx || ldy != (size_t)(p.batch * p.outH * p.outW) * C)
    return throw_error(env, fn, "dy, x or dx does not match the geometry"), NULL;
  atomic_int failed = 0;
  if (C > 0 && p.batch > 0 && p.outH > 0 && p.outW > 0 && p.sH >= p.fH && p.sW >= p.fW) {
    PoolTask t = {&p, x, dy, dx, 1, &failed};
    pool_parallel_for((size_t)(p.batch * p.outH), PARALLEL_GRAIN / pool_row_work(&p) + 1, max_pool_grad_disjoint, &t);
    if (atomic_load(&failed)) return throw_error(env, fn, "out of memory"), NULL;
    return NULL;
  }
  pool_parallel_for(ldx, PARALLEL_GRAIN, zero_range, dx);
  if (C == 0 || p.outH == 0) return NULL;
  const int by_rows = p.sH >= p.fH;
  PoolTask t = {&p, x, dy, dx, by_rows, &failed};
  const size_t units = (size_t)p.batch * (by_rows ? (size_t)p.outH : 1);
  const size_t work = pool_row_work(&p) * (by_rows ? 1 : (size_t)p.outH);
  pool_parallel_for(units, PARALLEL_GRAIN / work + 1, max_pool_grad_units, &t);
  if (atomic_load(&failed)) return throw_error(env, fn, "out of memory"), NULL;
  return NULL;
}

/* unary(op, x, out, alpha): element-wise, with the JS kernels' formulas (alpha: Step's value at x <= 0,
 * LeakyRelu's slope). */
enum {
  UN_RELU = 0, UN_STEP = 1, UN_NEG = 2, UN_SQUARE = 3, UN_SQRT = 4, UN_RSQRT = 5, UN_EXP = 6, UN_LOG = 7,
  UN_ABS = 8, UN_SIGMOID = 9, UN_TANH = 10, UN_RELU6 = 11, UN_ELU = 12, UN_LEAKY_RELU = 13
};

typedef struct {
  int op;
  const float* x;
  float* o;
  float alpha;
} UnaryTask;

/* The transcendental ops use vm_exp / vm_log (vector-math.h, about 1 ulp); the JS kernels compute in double
 * and round, so results may differ from them by an ulp or two. */
VECTOR_CLONES
static void unary_range(void* ctx, size_t begin, size_t end) {
  const UnaryTask* t = (const UnaryTask*)ctx;
  const float* x = t->x + begin;
  float* o = t->o + begin;
  const size_t n = end - begin;
  const float a = t->alpha;
  switch (t->op) {
    case UN_RELU: for (size_t i = 0; i < n; i++) o[i] = x[i] != x[i] ? x[i] : (x[i] > 0.f ? x[i] : 0.f); break;
    case UN_STEP: for (size_t i = 0; i < n; i++) o[i] = x[i] != x[i] ? x[i] : (x[i] > 0.f ? 1.f : a); break;
    case UN_NEG: for (size_t i = 0; i < n; i++) o[i] = -x[i]; break;
    case UN_SQUARE: for (size_t i = 0; i < n; i++) o[i] = x[i] * x[i]; break;
    case UN_SQRT: for (size_t i = 0; i < n; i++) o[i] = sqrtf(x[i]); break;
    case UN_RSQRT: for (size_t i = 0; i < n; i++) o[i] = 1.f / sqrtf(x[i]); break;
    case UN_EXP: for (size_t i = 0; i < n; i++) o[i] = vm_exp(x[i]); break;
    case UN_LOG: for (size_t i = 0; i < n; i++) o[i] = vm_log(x[i]); break;
    case UN_ABS: for (size_t i = 0; i < n; i++) o[i] = fabsf(x[i]); break;
    case UN_SIGMOID: for (size_t i = 0; i < n; i++) o[i] = 1.f / (1.f + vm_exp(-x[i])); break;
    case UN_TANH: for (size_t i = 0; i < n; i++) o[i] = (float)tanh((double)x[i]); break;
    case UN_RELU6:
      for (size_t i = 0; i < n; i++) o[i] = x[i] != x[i] ? x[i] : (x[i] > 0.f ? (x[i] < 6.f ? x[i] : 6.f) : 0.f);
      break;
    case UN_ELU: for (size_t i = 0; i < n; i++) o[i] = x[i] >= 0.f ? x[i] : vm_exp(x[i]) - 1.f; break;
    case UN_LEAKY_RELU: for (size_t i = 0; i < n; i++) o[i] = x[i] < 0.f ? a * x[i] : x[i]; break;
    default: break;
  }
}

static napi_value js_unary(napi_env env, napi_callback_info info) {
  const char* fn = "unary";
  napi_value argv[4];
  int64_t op;
  float *x, *o;
  size_t lx, lo;
  double alpha;
  if (get_args(env, info, 4, argv, fn)) return NULL;
  if (arg_int(env, argv[0], fn, "op", 0, &op) || arg_f32(env, argv[1], fn, "x", 0, &x, &lx) ||
      arg_f32(env, argv[2], fn, "out", 0, &o, &lo) || arg_double(env, argv[3], fn, "alpha", &alpha))
    return NULL;
  if (op > UN_LEAKY_RELU) return throw_error(env, fn, "unknown op"), NULL;
  if (lo != lx) return throw_error(env, fn, "out must have the size of x"), NULL;
  UnaryTask t = {(int)op, x, o, (float)alpha};
  pool_parallel_for(lx, PARALLEL_GRAIN, unary_range, &t);
  return NULL;
}

/* ---------------------------------------------------------------------------------------------- */
/* transpose(x, shape, perm, out): out = x with its dims permuted (out dim j is x dim perm[j]). The caller
 * merges dims that stay neighbours, so perm moves every dim. When the innermost dim stays innermost the
 * copy is a run of memcpy's; otherwise the two dims that hold the input's and the output's contiguous axis
 * are transposed in cache-sized tiles, and every other dim is walked by an odometer. */

#define TILE 32

static napi_value js_transpose(napi_env env, napi_callback_info info) {
  const char* fn = "transpose";
  napi_value argv[4];
  float *x, *o;
  size_t lx, lo, lshape, lperm;
  int32_t *shape, *perm;
  if (get_args(env, info, 4, argv, fn)) return NULL;
  if (arg_f32(env, argv[0], fn, "x", 0, &x, &lx) || arg_i32(env, argv[1], fn, "shape", &shape, &lshape) ||
      arg_i32(env, argv[2], fn, "perm", &perm, &lperm) || arg_f32(env, argv[3], fn, "out", 0, &o, &lo))
    return NULL;
  const size_t rank = lshape;
  if (rank < 1 || rank > MAX_RANK || lperm != rank) return throw_error(env, fn, "shape and perm must have rank 1 to 8"), NULL;
  int seen[MAX_RANK] = {0};
  size_t total = 1;
  for (size_t d = 0; d < rank; d++) {
    if (shape[d] < 0) return throw_error(env, fn, "negative dimension"), NULL;
    if (perm[d] < 0 || (size_t)perm[d] >= rank || seen[perm[d]]++) return throw_error(env, fn, "perm is not a permutation"), NULL;
    total *= (size_t)shape[d];
  }
  if (lx != total || lo != total) return throw_error(env, fn, "x or out does not match the shape"), NULL;
  if (total == 0) return NULL;
  int64_t istride[MAX_RANK], oshape[MAX_RANK], ostride[MAX_RANK], src[MAX_RANK];
  int64_t st = 1;
  for (int64_t d = (int64_t)rank - 1; d >= 0; d--) istride[d] = st, st *= shape[d];
  st = 1;
  for (int64_t j = (int64_t)rank - 1; j >= 0; j--) {
    oshape[j] = shape[perm[j]];
    src[j] = istride[perm[j]];
    ostride[j] = st;
    st *= oshape[j];
  }
  const size_t r = rank;
  if ((size_t)perm[r - 1] == r - 1) {
    /* Inner rows stay contiguous: copy them whole. */
    const size_t row = (size_t)oshape[r - 1];
    const size_t rows = total / row;
    int64_t idx[MAX_RANK] = {0};
    int64_t off = 0;
    for (size_t q = 0; q < rows; q++) {
      memcpy(o + q * row, x + off, row * sizeof(float));
      for (int64_t d = (int64_t)r - 2; d >= 0; d--) {
        idx[d]++;
        off += src[d];
        if (idx[d] < oshape[d]) break;
        off -= src[d] * idx[d];
        idx[d] = 0;
      }
    }
    return NULL;
  }
  /* jx: the output dim that is the input's innermost dim (stride 1 in x). */
  size_t jx = 0;
  while ((size_t)perm[jx] != r - 1) jx++;
  const int64_t n1 = oshape[jx], n2 = oshape[r - 1];
  const int64_t s2 = src[r - 1], o1 = ostride[jx];
  /* Odometer over every output dim except jx and r-1. */
  int64_t idx[MAX_RANK] = {0};
  size_t outer = total / (size_t)(n1 * n2);
  int64_t ioff = 0, ooff = 0;
  for (size_t q = 0; q < outer; q++) {
    for (int64_t a0 = 0; a0 < n1; a0 += TILE) {
      const int64_t a1 = a0 + TILE < n1 ? a0 + TILE : n1;
      for (int64_t b0 = 0; b0 < n2; b0 += TILE) {
        const int64_t b1 = b0 + TILE < n2 ? b0 + TILE : n2;
        for (int64_t a = a0; a < a1; a++) {
          const float* xs = x + ioff + a;
          float* os = o + ooff + a * o1;
          for (int64_t b = b0; b < b1; b++) os[b] = xs[b * s2];
        }
      }
    }
    for (int64_t d = (int64_t)r - 2; d >= 0; d--) {
      if ((size_t)d == jx) continue;
      idx[d]++;
      ioff += src[d];
      ooff += ostride[d];
      if (idx[d] < oshape[d]) break;
      ioff -= src[d] * idx[d];
      ooff -= ostride[d] * idx[d];
      idx[d] = 0;
    }
  }
  return NULL;
}

/* ---------------------------------------------------------------------------------------------- */

static void cleanup_pool(void* arg) {
  (void)arg;
  pool_shutdown();
#ifdef CONV_TILED
  free_thread_scratch();
  winograd_release();
#endif
}

NAPI_MODULE_INIT() {
  napi_add_env_cleanup_hook(env, cleanup_pool, NULL);
  const char* matvec = getenv("BILEVEL_BLAS_MATVEC");
  if (matvec != NULL && strcmp(matvec, "openblas") == 0) atomic_store(&matvec_method, 1);
  const char* conv = getenv("BILEVEL_BLAS_CONV");
  if (conv != NULL && strcmp(conv, "im2col") == 0) set_conv_method(1);
  if (conv != NULL && strcmp(conv, "winograd") == 0) set_conv_method(2);
  if (conv != NULL && strcmp(conv, "winograd4") == 0) set_conv_method(3);
#ifndef BILEVEL_ACCELERATE
  pool_set_threads(openblas_get_num_threads());
#else
  pool_set_threads(1);
#endif
  const napi_property_descriptor props[] = {
      {"info", NULL, js_info, NULL, NULL, NULL, napi_enumerable, NULL},
      {"setThreads", NULL, js_set_threads, NULL, NULL, NULL, napi_enumerable, NULL},
      {"setSpin", NULL, js_set_spin, NULL, NULL, NULL, napi_enumerable, NULL},
      {"setConvMethod", NULL, js_set_conv_method, NULL, NULL, NULL, napi_enumerable, NULL},
      {"setMatVecMethod", NULL, js_set_matvec_method, NULL, NULL, NULL, napi_enumerable, NULL},
      {"sgemm", NULL, js_sgemm, NULL, NULL, NULL, napi_enumerable, NULL},
      {"batchMatMul", NULL, js_batch_mat_mul, NULL, NULL, NULL, napi_enumerable, NULL},
      {"conv2d", NULL, js_conv2d, NULL, NULL, NULL, napi_enumerable, NULL},
      {"conv2dBackpropInput", NULL, js_conv2d_backprop_input, NULL, NULL, NULL, napi_enumerable, NULL},
      {"conv2dBackpropFilter", NULL, js_conv2d_backprop_filter, NULL, NULL, NULL, napi_enumerable, NULL},
      {"binary", NULL, js_binary, NULL, NULL, NULL, napi_enumerable, NULL},
      {"reduce", NULL, js_reduce, NULL, NULL, NULL, napi_enumerable, NULL},
      {"maxPool", NULL, js_max_pool, NULL, NULL, NULL, napi_enumerable, NULL},
      {"maxPoolGrad", NULL, js_max_pool_grad, NULL, NULL, NULL, napi_enumerable, NULL},
      {"unary", NULL, js_unary, NULL, NULL, NULL, napi_enumerable, NULL},
      {"transpose", NULL, js_transpose, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
  bilevel_conv_net_register(env, exports);
  return exports;
}
