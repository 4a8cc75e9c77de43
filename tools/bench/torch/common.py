"""Shared plumbing of the PyTorch twins of the speed section (tools/bench/src/suite/speed).

A twin is started as ``python <family>.py '<json>'`` where the JSON holds the workload (the same object the
Bilevel side runs), the thread count and, for workloads with data, a folder of arrays written by the Bilevel
worker (``index.json`` plus one raw little-endian file per array). It prints one JSON line:
``{"timesMs": [...], "checks": {...}, "setupSeconds": s}``, or ``{"error": "...", "status": "failed"}``.

Interleaved runs (``"interleave": true`` in the settings): after its warm-up the twin prints ``{"ready": true}``
and then times only the blocks of steps the suite asks for on stdin (one ``{"block": k}`` line each, answered by
``{"blockTimesMs": [...]}``; each block after one untimed step), until a block of 0; the suite alternates these blocks with the Bilevel side's, so
both sides sample the same minutes of a shared machine.
"""

import json
import math
import os
import sys
import time
import traceback

import torch

DTYPES = {"float32": torch.float32, "float64": torch.float64, "int32": torch.int32}

# Set by read_config from the settings' "interleave".
INTERLEAVE = False


def read_config():
    """The JSON settings of argv[1], with torch set up: threads, float32, seed."""
    if len(sys.argv) < 2:
        raise SystemExit("usage: python <twin>.py '<json settings>' (started by tools/bench/dist/run.js)")
    config = json.loads(sys.argv[1])
    global INTERLEAVE
    INTERLEAVE = bool(config.get("interleave", False))
    torch.set_num_threads(int(config["threads"]))
    torch.set_default_dtype(torch.float32)
    torch.manual_seed(int(config.get("seed", 0)))
    return config


def load_arrays(folder):
    """The arrays of a folder written by the Bilevel worker, by name."""
    with open(os.path.join(folder, "index.json"), encoding="utf8") as f:
        index = json.load(f)
    if sys.byteorder != "little":
        raise RuntimeError("the array files are little-endian")
    out = {}
    for entry in index["arrays"]:
        with open(os.path.join(folder, entry["file"]), "rb") as f:
            raw = bytearray(f.read())
        t = torch.frombuffer(raw, dtype=DTYPES[entry["dtype"]]) if raw else torch.empty(0, dtype=DTYPES[entry["dtype"]])
        out[entry["name"]] = t.reshape(entry["shape"])
    return out


def time_steps(step, warmup, steps, after_warmup=None, sample=None):
    """Runs ``step`` warmup times (then ``after_warmup()``, untimed), then times ``steps`` calls (milliseconds each).

    ``sample``, when given, measures one sample itself and returns its milliseconds (the micro-kernels time a
    batch of calls per sample). Interleaved, the timed samples are the blocks the suite asks for on stdin.
    """
    for _ in range(warmup):
        step()
    if after_warmup is not None:
        after_warmup()

    def one():
        t0 = time.perf_counter()
        step()
        return (time.perf_counter() - t0) * 1000.0

    measure = sample if sample is not None else one
    if not INTERLEAVE:
        return [measure() for _ in range(steps)]
    print(json.dumps({"ready": True}), flush=True)
    times = []
    while True:
        line = sys.stdin.readline()
        if not line:
            break  # the suite went away
        k = int(json.loads(line)["block"])
        if k <= 0:
            break
        measure()  # untimed: the first step after the other side's block pays for cold caches and threads
        block = [measure() for _ in range(k)]
        times.extend(block)
        print(json.dumps({"blockTimesMs": block}), flush=True)
    return times


def emit(times_ms, checks=None, setup_seconds=None):
    """Prints the result line the suite reads."""
    out = {"timesMs": times_ms, "checks": {k: float(v) for k, v in (checks or {}).items()}}
    if setup_seconds is not None:
        out["setupSeconds"] = setup_seconds
    print(json.dumps(out), flush=True)


def run(main):
    """Runs ``main(config)``; any error becomes a JSON error line (and exit code 1)."""
    try:
        main(read_config())
    except Exception as e:  # the suite reports the message
        traceback.print_exc(file=sys.stderr)
        print(json.dumps({"error": f"{type(e).__name__}: {e}", "status": "failed"}), flush=True)
        sys.exit(1)


def finite(v):
    return not (math.isnan(v) or math.isinf(v))
