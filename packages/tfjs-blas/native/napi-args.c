/* Argument helpers of the addon's N-API functions (declared in napi-args.h). */
#include "napi-args.h"

#include <stdint.h>
#include <stdio.h>


int throw_error(napi_env env, const char* fn, const char* what) {
  char msg[512];
  snprintf(msg, sizeof msg, "bilevel-blas %s: %s", fn, what);
  napi_throw_error(env, NULL, msg);
  return -1;
}

int arg_f32(napi_env env, napi_value v, const char* fn, const char* name, int nullable, float** data,
                   size_t* length) {
  napi_valuetype vt;
  if (napi_typeof(env, v, &vt) != napi_ok) return throw_error(env, fn, "cannot read an argument");
  if (nullable && (vt == napi_null || vt == napi_undefined)) {
    *data = NULL;
    *length = 0;
    return 0;
  }
  bool is_ta = false;
  napi_is_typedarray(env, v, &is_ta);
  char msg[160];
  if (!is_ta) {
    snprintf(msg, sizeof msg, "%s must be a Float32Array", name);
    return throw_error(env, fn, msg);
  }
  napi_typedarray_type type;
  void* ptr = NULL;
  napi_value buffer;
  size_t offset;
  if (napi_get_typedarray_info(env, v, &type, length, &ptr, &buffer, &offset) != napi_ok ||
      type != napi_float32_array) {
    snprintf(msg, sizeof msg, "%s must be a Float32Array", name);
    return throw_error(env, fn, msg);
  }
  *data = (float*)ptr;
  return 0;
}

int arg_i32(napi_env env, napi_value v, const char* fn, const char* name, int32_t** data, size_t* length) {
  bool is_ta = false;
  napi_is_typedarray(env, v, &is_ta);
  char msg[160];
  napi_typedarray_type type;
  void* ptr = NULL;
  napi_value buffer;
  size_t offset;
  if (!is_ta || napi_get_typedarray_info(env, v, &type, length, &ptr, &buffer, &offset) != napi_ok ||
      type != napi_int32_array) {
    snprintf(msg, sizeof msg, "%s must be an Int32Array", name);
    return throw_error(env, fn, msg);
  }
  *data = (int32_t*)ptr;
  return 0;
}

int arg_int(napi_env env, napi_value v, const char* fn, const char* name, int64_t min, int64_t* out) {
  napi_valuetype vt;
  char msg[160];
  if (napi_typeof(env, v, &vt) != napi_ok || vt != napi_number || napi_get_value_int64(env, v, out) != napi_ok) {
    snprintf(msg, sizeof msg, "%s must be an integer", name);
    return throw_error(env, fn, msg);
  }
  if (*out < min || *out > INT32_MAX) {
    snprintf(msg, sizeof msg, "%s = %lld is out of range", name, (long long)*out);
    return throw_error(env, fn, msg);
  }
  return 0;
}

int arg_double(napi_env env, napi_value v, const char* fn, const char* name, double* out) {
  napi_valuetype vt;
  char msg[160];
  if (napi_typeof(env, v, &vt) != napi_ok || vt != napi_number || napi_get_value_double(env, v, out) != napi_ok) {
    snprintf(msg, sizeof msg, "%s must be a number", name);
    return throw_error(env, fn, msg);
  }
  return 0;
}

int arg_bool(napi_env env, napi_value v, const char* fn, const char* name, bool* out) {
  napi_valuetype vt;
  char msg[160];
  if (napi_typeof(env, v, &vt) != napi_ok || vt != napi_boolean || napi_get_value_bool(env, v, out) != napi_ok) {
    snprintf(msg, sizeof msg, "%s must be a boolean", name);
    return throw_error(env, fn, msg);
  }
  return 0;
}

int get_args(napi_env env, napi_callback_info info, size_t expected, napi_value* argv, const char* fn) {
  size_t argc = expected;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) return throw_error(env, fn, "bad call");
  if (argc < expected) {
    char msg[96];
    snprintf(msg, sizeof msg, "expected %zu arguments, got %zu", expected, argc);
    return throw_error(env, fn, msg);
  }
  return 0;
}
