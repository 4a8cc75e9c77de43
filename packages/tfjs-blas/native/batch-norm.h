/* Batch-norm kernels of the addon (batch-norm.c): channelMoments, channelSums, channelAffine. */
#ifndef BILEVEL_BATCH_NORM_H
#define BILEVEL_BATCH_NORM_H
#include <node_api.h>

/* Adds the batch-norm kernels to the addon's exports. */
void bilevel_batch_norm_register(napi_env env, napi_value exports);
#endif
