"""PyTorch twin of the speed section's quadratic workloads (qNBO's toy, problem `quadratic`).

g(x, y) = ½yᵀAy − xᵀy,  f(x, y) = ½‖x − z₀‖² + ½yᵀAy, with A, z₀ and x* as the Bilevel worker built them
(packages/problems/src/quadratic.ts). Prints the per-step times and ‖x − x*‖/‖x*‖ after all steps.
"""

import time

import torch

from algorithms import Trainer
from common import emit, load_arrays, run, time_steps


class Quadratic:
    def __init__(self, A, z0):
        self.A = A
        self.z0 = z0
        self.n = z0.numel()

    def initial_x(self):
        return torch.zeros(self.n)

    def initial_y(self):
        return torch.zeros(self.n)

    def inner_loss(self, x, y):
        return 0.5 * torch.dot(y, self.A @ y) - torch.dot(x, y)

    def outer_loss(self, x, y):
        return 0.5 * torch.sum((x - self.z0) ** 2) + 0.5 * torch.dot(y, self.A @ y)

    def inner_loss_batched(self, xs, ys):
        # One row per stacked problem; A is symmetric, so (A y_b)ᵀ = y_bᵀ A.
        return 0.5 * torch.sum(ys * (ys @ self.A), dim=1) - torch.sum(xs * ys, dim=1)


def main(config):
    w = config["workload"]
    t0 = time.perf_counter()
    data = load_arrays(config["data"])
    problem = Quadratic(data["A"], data["z0"])
    trainer = Trainer(problem, w["spec"])
    setup = time.perf_counter() - t0
    x_star = data["xStar"]
    error = lambda: (torch.norm(trainer.x.double() - x_star) / torch.norm(x_star)).item()
    checks = {}
    times = time_steps(trainer.step, w["warmup"], w["steps"], lambda: checks.update(xRelativeErrorWarmup=error()))
    checks.update(xRelativeError=error(), outerLoss=trainer.outer_loss, outerLossFirst=trainer.outer_loss_first)
    checks["oracleCalls"] = sum(trainer.oracles.counts.values())
    emit(times, checks, setup)


if __name__ == "__main__":
    run(main)
