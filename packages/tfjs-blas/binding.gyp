{
  "targets": [
    {
      "target_name": "bilevel_blas",
      "sources": ["native/bilevel-blas.c", "native/thread-pool.c", "native/conv-net.c", "native/napi-args.c", "native/winograd.c"],
      "cflags": ["-O3", "-std=c11", "-fno-math-errno", "-fno-trapping-math", "-pthread", "-Wall", "-Wextra"],
      "ldflags": ["-pthread"],
      "defines": ["NAPI_VERSION=8"],
      "conditions": [
        [
          "OS=='mac'",
          {
            "defines": ["BILEVEL_ACCELERATE", "ACCELERATE_NEW_LAPACK"],
            "libraries": ["-framework Accelerate"],
            "xcode_settings": { "OTHER_CFLAGS": ["-O3", "-std=c11"] }
          },
          {
            "include_dirs": ["/usr/include/openblas", "/usr/local/include", "/opt/homebrew/opt/openblas/include"],
            "libraries": ["-lopenblas"]
          }
        ]
      ]
    }
  ]
}
