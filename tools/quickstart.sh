#!/usr/bin/env bash
# Quick start on a fresh clone: install the data set and BLAS (Debian/Ubuntu, when possible), the npm
# packages, build, and run the main experiment (data hyper-cleaning on Fashion-MNIST: ESJ vs qNBO vs AID-CG).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ] && [ -z "${BILEVEL_DATA_PATH:-}" ]; then
  if command -v apt-get >/dev/null 2>&1; then
    SUDO=""
    [ "$(id -u)" = 0 ] || SUDO="sudo"
    echo "quickstart: installing Fashion-MNIST (dataset-fashion-mnist) and OpenBLAS with apt-get"
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq dataset-fashion-mnist libopenblas-dev
  else
    echo "quickstart: Fashion-MNIST not found. Put the four IDX .gz files in <dir>/fashion-mnist/ and set BILEVEL_DATA_PATH=<dir>" >&2
    exit 2
  fi
fi

npm ci
npm run experiment
