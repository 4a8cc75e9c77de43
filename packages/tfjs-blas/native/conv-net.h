/* Batch-norm and LeakyReLU kernels of the addon (conv-net.c): channelMoments, channelSums, channelAffine. */
#ifndef BILEVEL_CONV_NET_H
#define BILEVEL_CONV_NET_H
#include <node_api.h>

/* Adds the batch-norm and LeakyReLU kernels to the addon's exports. */
void bilevel_conv_net_register(napi_env env, napi_value exports);
#endif
