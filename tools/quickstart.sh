#!/usr/bin/env bash
# Quick start on a fresh clone: install the data set and BLAS (Debian/Ubuntu, when possible), the npm
# packages, build, and run the main experiment (data hyper-cleaning on Fashion-MNIST at the papers' size on the
# native cpu-blas backend, a smaller size without it: ESJ vs qNBO vs AID-CG).
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages: the Fashion-MNIST data set (unless BILEVEL_DATA_PATH points elsewhere) and OpenBLAS for the
# fast native cpu-blas backend (optional: without it the library runs on wasm or cpu, only slower).
need=()
if [ ! -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ] && [ -z "${BILEVEL_DATA_PATH:-}" ]; then
  need+=(dataset-fashion-mnist)
fi
have_cblas=no
for h in /usr/include/cblas.h /usr/include/*/cblas.h /usr/include/openblas/cblas.h; do
  [ -f "$h" ] && have_cblas=yes
done
if [ "$have_cblas" = no ]; then
  need+=(libopenblas-dev)
fi
if [ ${#need[@]} -gt 0 ]; then
  if command -v apt-get >/dev/null 2>&1; then
    SUDO=""
    [ "$(id -u)" = 0 ] || SUDO="sudo"
    echo "quickstart: installing ${need[*]} with apt-get"
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq "${need[@]}"
  elif [[ " ${need[*]} " == *" dataset-fashion-mnist "* ]]; then
    echo "quickstart: Fashion-MNIST not found. Put the four IDX .gz files in <dir>/fashion-mnist/ and set BILEVEL_DATA_PATH=<dir>" >&2
    exit 2
  else
    echo "quickstart: no CBLAS found; continuing without the native cpu-blas backend (slower)"
  fi
fi

npm ci
npm run experiment
echo "quickstart: done. \`npx bilevel --help\` lists the commands; \`npm test\` runs the tests."
