"""PyTorch twin of the speed section's data hyper-cleaning workloads (problem `hyper-cleaning`).

One weight σ(x_i) per training sample of a softmax regression y = (W, b) (packages/problems/src/hyper-cleaning.ts):

    g(x, y) = (1/n) Σ_i σ(x_i)·CE(W a_i + b, ỹ_i) + (λ/2)‖W‖²,     f(x, y) = (1/m) Σ_j CE(W a'_j + b, y'_j)

on the training set (corrupted labels) and the validation set that the Bilevel worker wrote (the same split and
the same corrupted labels). y is one flat vector [W (d×k, row-major); b (k)].
"""

import time

import torch
import torch.nn.functional as F

from algorithms import Trainer
from common import emit, load_arrays, run, time_steps


class HyperCleaning:
    def __init__(self, train_x, train_y, valid_x, valid_y, inner_l2, classes=10):
        self.a, self.t = train_x, train_y.long()
        self.va, self.vt = valid_x, valid_y.long()
        self.lam = inner_l2
        self.n, self.d = train_x.shape
        self.k = classes

    def initial_x(self):
        return torch.zeros(self.n)

    def initial_y(self):
        return torch.zeros(self.d * self.k + self.k)

    def split(self, y):
        return y[: self.d * self.k].view(self.d, self.k), y[self.d * self.k :]

    def inner_loss(self, x, y):
        W, b = self.split(y)
        ce = F.cross_entropy(self.a @ W + b, self.t, reduction="none")
        return torch.mean(torch.sigmoid(x) * ce) + 0.5 * self.lam * torch.sum(W * W)

    def outer_loss(self, x, y):
        W, b = self.split(y)
        return F.cross_entropy(self.va @ W + b, self.vt)

    def inner_loss_batched(self, xs, ys):
        """One loss per stacked (x_b, y_b): the data multiplied once by the B weight matrices side by side."""
        B = ys.shape[0]
        W = ys[:, : self.d * self.k].view(B, self.d, self.k)
        b = ys[:, self.d * self.k :]
        logits = torch.einsum("nd,bdk->bnk", self.a, W) + b.unsqueeze(1)
        ce = F.cross_entropy(logits.transpose(1, 2), self.t.expand(B, -1), reduction="none")
        return torch.mean(torch.sigmoid(xs) * ce, dim=1) + 0.5 * self.lam * torch.sum(W * W, dim=(1, 2))


def main(config):
    w = config["workload"]
    spec = w["spec"]
    t0 = time.perf_counter()
    data = load_arrays(config["data"])
    problem = HyperCleaning(data["trainX"], data["trainY"], data["validX"], data["validY"], spec["problem"]["options"]["innerL2"])
    trainer = Trainer(problem, spec)
    setup = time.perf_counter() - t0
    times = time_steps(trainer.step, w["warmup"], w["steps"])
    checks = {"outerLoss": trainer.outer_loss, "outerLossFirst": trainer.outer_loss_first}
    emit(times, {**checks, "oracleCalls": sum(trainer.oracles.counts.values())}, setup)


if __name__ == "__main__":
    run(main)
