/* Argument helpers of the addon's N-API functions: each returns 0 on success; on failure it has thrown a JS
 * error naming the function (`fn`) and the argument, and returns -1. */
#ifndef BILEVEL_NAPI_ARGS_H
#define BILEVEL_NAPI_ARGS_H

#include <node_api.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#if defined(__GNUC__)
#define BILEVEL_INTERNAL __attribute__((visibility("hidden")))
#else
#define BILEVEL_INTERNAL
#endif

BILEVEL_INTERNAL int throw_error(napi_env env, const char* fn, const char* what);
BILEVEL_INTERNAL int arg_f32(napi_env env, napi_value v, const char* fn, const char* name, int nullable, float** data, size_t* length);
BILEVEL_INTERNAL int arg_i32(napi_env env, napi_value v, const char* fn, const char* name, int32_t** data, size_t* length);
BILEVEL_INTERNAL int arg_int(napi_env env, napi_value v, const char* fn, const char* name, int64_t min, int64_t* out);
BILEVEL_INTERNAL int arg_double(napi_env env, napi_value v, const char* fn, const char* name, double* out);
BILEVEL_INTERNAL int arg_bool(napi_env env, napi_value v, const char* fn, const char* name, bool* out);
BILEVEL_INTERNAL int get_args(napi_env env, napi_callback_info info, size_t expected, napi_value* argv, const char* fn);

#endif
