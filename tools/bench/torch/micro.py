"""PyTorch twin of the speed section's micro-kernels: sgemm, large and small adds, a dot read back as a number.

Each sample times `repeats` calls and reports the time per call, as the Bilevel side does.
"""

import time

import torch

from common import emit, run, time_steps


def main(config):
    spec = config["workload"]["spec"]
    warmup, steps = config["workload"]["warmup"], config["workload"]["steps"]
    n, repeats, op = spec["size"], spec["repeats"], spec["op"]
    shape = (n, n) if op == "sgemm" else (n,)
    a = torch.randn(shape)
    b = torch.randn(shape)
    checks = {}

    if op == "sgemm":
        call = lambda: a @ b
    elif op == "add":
        call = lambda: a + b
    else:

        def call():
            checks["dot"] = torch.dot(a, b).item()

    def sample():
        t0 = time.perf_counter()
        for _ in range(repeats):
            call()
        return (time.perf_counter() - t0) * 1000.0 / repeats

    emit(time_steps(sample, warmup, steps, sample=sample), checks, 0.0)


if __name__ == "__main__":
    run(main)
