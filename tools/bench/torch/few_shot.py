"""PyTorch twin of the speed section's few-shot workloads: one outer step of the ANIL-style problem of
packages/meta-learning (few-shot-problem.ts, head.ts) with AID-CG. With the arrays the Bilevel worker wrote, it
starts from the same backbone parameters and replays the same tasks (the synthetic images the library drew), so
both sides end at the same outer loss; without them it draws random images of the same sizes.

For B tasks of N ways (support S_b, query Q_b), backbone φ_x and a linear head y_b = (W_b, c_b) per task:

    g(x, y) = Σ_b [ CE(φ_x(S_b) W_bᵀ + c_b) + (λ/2)‖W_b‖² ],      f(x, y) = (1/B) Σ_b CE(φ_x(Q_b) W_bᵀ + c_b)

Batch norm normalizes each task on its own. As a PyTorch user would (and as the library's feature cache does),
the backbone runs once per step on the support images and once on the query images and its graph is kept: the
inner solve and the Hessian-vector products see only the head; ∇ₓf and the mixed product ∇²ₓᵧg·u backpropagate
through the query and the support graph. Every step starts from zero heads (the library's warmStart: false).
"""

import math
import time

import torch
import torch.nn.functional as F

from algorithms import GradientDescent, conjugate_gradient
from backbones import make_backbone
from common import emit, finite, load_arrays, run, time_steps


class HeadOracles:
    """The oracles of one step at fixed support features: ∇_y g and ∇²_yy g·v touch the heads only."""

    def __init__(self, loss, features, counts):
        self.loss = loss
        self.features = features.detach()
        self.counts = counts

    def inner_grad_y(self, _x, y):
        self.counts["innerGradY"] += 1
        y = y.detach().requires_grad_(True)
        (g,) = torch.autograd.grad(self.loss(self.features, y), y)
        return g

    def hessian_vector(self, y, v):
        self.counts["hessianVector"] += 1
        y = y.detach().requires_grad_(True)
        (g,) = torch.autograd.grad(self.loss(self.features, y), y, create_graph=True)
        (h,) = torch.autograd.grad(g, y, grad_outputs=v)
        return h


def main(config):
    w = config["workload"]
    spec = w["spec"]
    o = spec["problem"]["options"]
    B, N, K, Q = o["metaBatchSize"], o["ways"], o["shots"], o["queries"]
    size, channels, lam = o["imageSize"], o["channels"], o["headWeightDecay"]
    t0 = time.perf_counter()
    model = make_backbone(o["backbone"]["name"], o["backbone"].get("options", {}), size, channels)
    data = load_arrays(config["data"]) if config.get("data") else None
    if data is not None:
        model.load_library_parameters(data)
    params = list(model.parameters())
    with torch.no_grad():
        D = model(torch.zeros(2, channels, size, size)).shape[1]
    optimizer = torch.optim.Adam(params, lr=spec["outerOptimizer"]["options"]["learningRate"])
    solver = GradientDescent(**spec["innerSolver"]["options"])
    cg = spec["estimator"]["options"]
    labels = {"support": torch.arange(N).repeat_interleave(K).repeat(B), "query": torch.arange(N).repeat_interleave(Q).repeat(B)}

    def task(i):
        """Images (NCHW) and labels of step i: the library's task, or random images."""
        if data is None:
            return torch.randn(B * N * K, channels, size, size), torch.randn(B * N * Q, channels, size, size)
        labels["support"] = data[f"step{i}:supportLabels"].argmax(-1).reshape(-1)
        labels["query"] = data[f"step{i}:queryLabels"].argmax(-1).reshape(-1)
        nchw = lambda t: t.permute(0, 3, 1, 2).contiguous()
        return nchw(data[f"step{i}:supportImages"]), nchw(data[f"step{i}:queryImages"])

    def logits(features, y):
        W = y[: B * N * D].view(B, N, D)
        c = y[B * N * D :].view(B, N)
        return features.view(B, -1, D) @ W.transpose(1, 2) + c.unsqueeze(1)

    def inner_loss(features, y):
        ce = F.cross_entropy(logits(features, y).reshape(-1, N), labels["support"], reduction="none")
        W = y[: B * N * D]
        return ce.view(B, -1).mean(1).sum() + 0.5 * lam * torch.sum(W * W)

    def outer_loss(features, y):
        return F.cross_entropy(logits(features, y).reshape(-1, N), labels["query"])

    counts = {"innerGradY": 0, "outerGrad": 0, "hessianVector": 0, "mixedVector": 0}
    state = {"u": None, "outerLoss": math.nan, "outerLossFirst": math.nan, "step": 0}
    setup = time.perf_counter() - t0

    def step():
        support, query = task(state["step"])
        state["step"] += 1
        fs = model(support, groups=B)
        fq = model(query, groups=B)
        oracles = HeadOracles(inner_loss, fs, counts)
        inner = solver.solve(oracles, None, torch.zeros(B * N * D + B * N))
        y = inner.y.detach().requires_grad_(True)
        f = outer_loss(fq, y)
        *gx, gy = torch.autograd.grad(f, params + [y])
        counts["outerGrad"] += 1
        u = conjugate_gradient(
            lambda v: oracles.hessian_vector(inner.y, v),
            gy,
            state["u"] if cg.get("warmStart", True) else None,
            max_iterations=cg.get("maxIterations", 20),
            tolerance=cg.get("tolerance", 1e-6),
        )
        state["u"] = u
        y = inner.y.detach().requires_grad_(True)
        (g,) = torch.autograd.grad(inner_loss(fs, y), y, create_graph=True)
        mixed = torch.autograd.grad(g, params, grad_outputs=u)
        counts["mixedVector"] += 1
        hypergradient = [a - b for a, b in zip(gx, mixed)]
        norm = torch.sqrt(sum(h.pow(2).sum() for h in hypergradient)).item()
        loss = f.item()
        if not (finite(norm) and finite(loss)):
            raise FloatingPointError("non-finite hypergradient or outer loss")
        for p, h in zip(params, hypergradient):
            p.grad = h
        optimizer.step()
        if state["step"] == 1:
            state["outerLossFirst"] = loss
        state["outerLoss"] = loss

    times = time_steps(step, w["warmup"], w["steps"])
    checks = {"outerLoss": state["outerLoss"], "outerLossFirst": state["outerLossFirst"]}
    emit(times, {**checks, "oracleCalls": sum(counts.values())}, setup)


if __name__ == "__main__":
    run(main)
