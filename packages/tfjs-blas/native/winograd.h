/*
 * 3×3, stride-1, dilation-1 convolutions by Winograd's minimal filtering F(2×2, 3×3) or F(4×4, 3×3) (Lavin and
 * Gray, "Fast algorithms for convolutional neural networks", CVPR 2016): each 2×2 block of outputs from a 4×4
 * block of inputs with 16 multiplications per input channel and output channel instead of 36, or each 4×4 block
 * from a 6×6 block with 36 instead of 144.
 */
#ifndef BILEVEL_WINOGRAD_H
#define BILEVEL_WINOGRAD_H
#include <stddef.h>
#include <stdint.h>

/* NHWC input [batch, inH, inW, C], HWIO filter [3, 3, C, O], output [batch, outH, outW, O]; output pixel
 * (oy, ox) reads input rows oy − padTop … oy − padTop + 2 and columns ox − padLeft … ox − padLeft + 2 (zeros
 * outside the image). m is the side of the output blocks: 2 for F(2×2, 3×3), 4 for F(4×4, 3×3). */
typedef struct {
  int64_t batch, inH, inW, C, outH, outW, O, padTop, padLeft, m;
} WinogradShape;

/* Returns a buffer of at least `floats` floats private to the calling thread (kept between calls), or NULL. */
typedef float* (*winograd_scratch_fn)(size_t floats);

/* Output tiles (m×m blocks) per task: the products of a task are [tiles, C]·[C, O]. */
size_t winograd_tile_count(const WinogradShape* s);

/*
 * y = x ⋆ w. The products run as one-threaded sgemm calls inside tasks of the worker pool (the caller sets
 * the BLAS to one thread). Tiles whose inputs hold a NaN or an infinity are computed directly, so that special
 * values propagate as in a direct convolution; a filter with a NaN or an infinity makes every output computed
 * directly (only products of pixels inside the image, as the JS backend does). Returns 0, or -1 when memory ran
 * out.
 */
int winograd_conv3x3(const WinogradShape* s, const float* x, const float* w, float* y, winograd_scratch_fn scratch);

/*
 * dw = ∂/∂w Σ dy·(x ⋆ w) (dy [batch, outH, outW, O], dw [3, 3, C, O]), the adjoint of winograd_conv3x3; each
 * thread sums its tiles' products into a partial sum of its own. When x or dy holds a NaN or an infinity, dw is
 * computed directly instead (products of pixels inside the image only, as the JS backend does). Returns 0, or
 * -1 when memory ran out.
 */
int winograd_filter_gradient3x3(const WinogradShape* s, const float* x, const float* dy, float* dw,
                                winograd_scratch_fn scratch);
/* Frees the layer-sized buffers kept between calls (the addon's cleanup). */
void winograd_release(void);
#endif
