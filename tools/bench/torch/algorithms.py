"""Bilevel's algorithms written the way a PyTorch user would, step for step.

These mirror packages/solvers, packages/estimators and packages/core (trainer, optimizers, quasi-Newton
memories) of the TypeScript library: the same iterations, the same stopping rules, the same number of oracle
calls. Gradients come from autograd; Hessian- and mixed-vector products from double backward (each product
differentiates a fresh ∇_y g, as each oracle call of the library does). Variables are flat float32 vectors:
a problem unflattens views of them inside its losses.

A problem provides ``inner_loss(x, y)``, ``outer_loss(x, y)``, ``initial_x()``, ``initial_y()`` and, for
batched evolution-strategies solves, ``inner_loss_batched(xs, ys)`` (one loss per stacked row). It may provide
``begin_step()`` (few-shot: draw the step's tasks).
"""

import math
from dataclasses import dataclass
from typing import Optional

import torch

from common import finite


class Divergence(FloatingPointError):
    pass


# ————— oracles —————


class Oracles:
    """Counted gradients of g and f, and second-order products of g, by autograd."""

    def __init__(self, problem):
        self.problem = problem
        self.counts = {k: 0 for k in ("innerGradY", "outerGrad", "hessianVector", "mixedVector")}

    def inner_value_and_grad_y(self, x, y):
        self.counts["innerGradY"] += 1
        y = y.detach().requires_grad_(True)
        value = self.problem.inner_loss(x.detach(), y)
        (g,) = torch.autograd.grad(value, y)
        return value.detach(), g

    def inner_grad_y(self, x, y):
        return self.inner_value_and_grad_y(x, y)[1]

    def inner_grad_y_batched(self, xs, ys):
        """Per-row ∇_y g of stacked problems: the gradient of Σ_b g(x_b, y_b) with respect to ys."""
        self.counts["innerGradY"] += ys.shape[0]
        ys = ys.detach().requires_grad_(True)
        (g,) = torch.autograd.grad(self.problem.inner_loss_batched(xs.detach(), ys).sum(), ys)
        return g

    def outer_grads(self, x, y):
        """f, ∇ₓf and ∇_y f from one backward pass."""
        self.counts["outerGrad"] += 1
        x = x.detach().requires_grad_(True)
        y = y.detach().requires_grad_(True)
        value = self.problem.outer_loss(x, y)
        gx, gy = torch.autograd.grad(value, (x, y), allow_unused=True)
        gx = torch.zeros_like(x) if gx is None else gx
        gy = torch.zeros_like(y) if gy is None else gy
        return value.detach(), gx, gy

    def hessian_vector(self, x, y, v):
        """∇²_yy g · v: differentiate ⟨∇_y g, v⟩ with respect to y."""
        self.counts["hessianVector"] += 1
        y = y.detach().requires_grad_(True)
        (g,) = torch.autograd.grad(self.problem.inner_loss(x.detach(), y), y, create_graph=True)
        (h,) = torch.autograd.grad(g, y, grad_outputs=v)
        return h

    def mixed_vector(self, x, y, v):
        """∇²ₓᵧ g · v: differentiate ⟨∇_y g, v⟩ with respect to x."""
        self.counts["mixedVector"] += 1
        x = x.detach().requires_grad_(True)
        y = y.detach().requires_grad_(True)
        (g,) = torch.autograd.grad(self.problem.inner_loss(x, y), y, create_graph=True)
        (m,) = torch.autograd.grad(g, x, grad_outputs=v, allow_unused=True)
        return torch.zeros_like(x) if m is None else m


# ————— inner solvers —————


@dataclass
class InnerResult:
    y: torch.Tensor
    iterations: int
    gradient_norm: float
    converged: bool
    curvature: Optional[object] = None


class GradientDescent:
    """y ← y − α∇_y g; ‖∇_y g‖ read every ``checkEvery`` iterations and at the last (packages/solvers gd)."""

    elementwise = True

    def __init__(self, stepSize=0.1, maxIterations=100, tolerance=0.0, checkEvery=10, momentum=0.0, nesterov=False):
        if momentum != 0:
            raise NotImplementedError("the twin's gd has no momentum")
        self.step_size = stepSize
        self.max_iterations = maxIterations
        self.tolerance = tolerance
        self.check_every = checkEvery

    def solve(self, oracles, x, y0, max_iterations=None, batched=False):
        budget = self.max_iterations if max_iterations is None else max_iterations
        y = y0
        norm = math.nan
        k = 0
        converged = False
        while k < budget:
            g = oracles.inner_grad_y_batched(x, y) if batched else oracles.inner_grad_y(x, y)
            if k % self.check_every == 0 or k == budget - 1:
                # A batched solve must meet the tolerance in every member.
                norm = (g.norm(dim=1).max() if batched else g.norm()).item()
                if not finite(norm):
                    raise Divergence(f"gd: gradient norm {norm} at iteration {k}")
                if norm <= self.tolerance:
                    converged = True
                    break
            y = y - self.step_size * g
            k += 1
        return InnerResult(y, k, norm, converged)


class LbfgsMemory:
    """The L-BFGS inverse-Hessian operator: two-loop recursion over the last m pairs with sᵀr > ε, H₀ = γI."""

    def __init__(self, memory, initial_scaling="auto", curvature_epsilon=1e-10):
        self.m = memory
        self.initial_scaling = initial_scaling
        self.eps = curvature_epsilon
        self.clear()

    def clear(self):
        self.s, self.r, self.rho = [], [], []
        self.gamma = 1.0 if self.initial_scaling == "auto" else float(self.initial_scaling)

    def __len__(self):
        return len(self.s)

    def push(self, s, r):
        sr = torch.dot(s, r).item()
        rr = torch.dot(r, r).item()
        if not (finite(sr) and finite(rr)) or not sr > self.eps:
            return False
        if len(self.s) == self.m:
            del self.s[0], self.r[0], self.rho[0]
        self.s.append(s.clone())
        self.r.append(r.clone())
        self.rho.append(1.0 / sr)
        if self.initial_scaling == "auto":
            self.gamma = sr / rr
        return True

    def apply(self, v):
        q = v.clone()
        alphas = []
        for s, r, rho in zip(reversed(self.s), reversed(self.r), reversed(self.rho)):
            a = rho * torch.dot(s, q)
            q -= a * r
            alphas.append(a)
        z = self.gamma * q
        for s, r, rho, a in zip(self.s, self.r, self.rho, reversed(alphas)):
            b = rho * torch.dot(r, z)
            z += (a - b) * s
        return z


@dataclass
class Point:
    alpha: float
    y: torch.Tensor
    grad: torch.Tensor
    value: float
    slope: float
    gradient_norm: float


def sufficient_decrease(p, f0, g0, c1, value_noise):
    """Armijo, or within float32 noise of φ(0) the approximate Wolfe test of Hager & Zhang."""
    if not (finite(p.value) and finite(p.slope)):
        return False
    if p.value <= f0 + c1 * p.alpha * g0:
        return True
    return p.value <= f0 + value_noise * abs(f0) and p.slope <= (2 * c1 - 1) * g0


def cubic_minimizer(a, fa, ga, b, fb, gb):
    d1 = ga + gb - 3 * (fa - fb) / (a - b)
    disc = d1 * d1 - ga * gb
    if not disc >= 0:
        return math.nan
    d2 = math.copysign(math.sqrt(disc), b - a) if b != a else 0.0
    den = gb - ga + 2 * d2
    if den == 0:
        return math.nan
    return b - (b - a) * (gb + d2 - d1) / den


def strong_wolfe(trial, f0, g0, alpha0, c1, c2, value_noise, max_steps):
    """Strong Wolfe line search (Nocedal & Wright, Algs. 3.5 and 3.6), as packages/solvers/line-search.ts."""
    armijo = lambda p: sufficient_decrease(p, f0, g0, c1, value_noise)
    noise = value_noise * abs(f0)
    wolfe = lambda p: abs(p.slope) <= -c2 * g0
    state = {"evaluations": 0, "lo": None}

    def lo_tuple():
        lo = state["lo"]
        return (0.0, f0, g0) if lo is None else (lo.alpha, lo.value, lo.slope)

    def zoom(hi):
        while state["evaluations"] < max_steps:
            a, fa, ga = lo_tuple()
            b = hi[0]
            width = abs(b - a)
            left = min(a, b) + 0.1 * width
            right = max(a, b) - 0.1 * width
            alpha = cubic_minimizer(a, fa, ga, b, hi[1], hi[2]) if finite(hi[1]) and finite(hi[2]) else math.nan
            if not (left <= alpha <= right):
                alpha = 0.5 * (a + b)
            if width <= 1e-12 * max(1.0, abs(a)):
                break
            p = trial(alpha)
            state["evaluations"] += 1
            if not armijo(p) or p.value > fa + noise:
                hi = (p.alpha, p.value, p.slope)
                continue
            if wolfe(p):
                return p
            if p.slope * (b - a) >= 0:
                hi = (a, fa, ga)
            state["lo"] = p
        return state["lo"]

    alpha = alpha0
    prev_value = f0
    while state["evaluations"] < max_steps:
        p = trial(alpha)
        state["evaluations"] += 1
        if not armijo(p) or (state["evaluations"] > 1 and p.value > prev_value + noise):
            return zoom((p.alpha, p.value, p.slope))
        if wolfe(p):
            return p
        if p.slope >= 0:
            hi = lo_tuple()
            state["lo"] = p
            return zoom(hi)
        state["lo"] = p
        prev_value = p.value
        alpha *= 2
    return state["lo"]


class Lbfgs:
    """L-BFGS on the inner problem with qNBO's warm-up steps (packages/solvers lbfgs + quasi-newton-solver)."""

    elementwise = False

    def __init__(
        self,
        maxIterations=100,
        tolerance=0.0,
        lineSearch="strong-wolfe",
        stepSize=1.0,
        c1=1e-4,
        c2=0.9,
        valueNoise=1e-6,
        backtrackingFactor=0.5,
        maxLineSearchSteps=20,
        warmupSteps=0,
        warmupStepSize=0.1,
        initialScaling="auto",
        curvatureEpsilon=1e-10,
        memory=10,
    ):
        if lineSearch not in ("strong-wolfe", "fixed"):
            raise NotImplementedError(f"the twin's lbfgs has no '{lineSearch}' line search")
        self.max_iterations = maxIterations
        self.tolerance = tolerance
        self.line_search = lineSearch
        self.step_size = stepSize
        self.c1, self.c2, self.value_noise = c1, c2, valueNoise
        self.max_line_search_steps = maxLineSearchSteps
        self.warmup_steps = warmupSteps
        self.warmup_step_size = warmupStepSize
        self.memory_options = (memory, initialScaling, curvatureEpsilon)

    def solve(self, oracles, x, y0, max_iterations=None, batched=False):
        budget = self.max_iterations if max_iterations is None else max_iterations
        memory = LbfgsMemory(*self.memory_options)

        def evaluate(y, d, alpha):
            value, g = oracles.inner_value_and_grad_y(x, y)
            slope = torch.dot(g, d).item() if d is not None else 0.0
            return Point(alpha, y, g, value.item(), slope, g.norm().item())

        y = y0
        pt = None
        norm = math.nan
        k = 0
        stopped = "budget"
        while k < budget:
            if pt is None:
                pt = evaluate(y, None, 0.0)
            cur = pt
            norm = cur.gradient_norm
            if not (finite(cur.value) and finite(norm)):
                raise Divergence(f"lbfgs: non-finite loss or gradient at iteration {k}")
            if norm <= self.tolerance:
                stopped = "tolerance"
                break
            if k < self.warmup_steps:
                y = cur.y - self.warmup_step_size * cur.grad
                pt = None
                k += 1
                continue
            point = self._step(cur, memory, evaluate, k)
            if point is None:
                stopped = "stalled"
                break
            memory.push(point.y - cur.y, point.grad - cur.grad)
            pt = point
            y = point.y
            k += 1
            norm = point.gradient_norm
            if not (finite(point.value) and finite(norm)):
                raise Divergence(f"lbfgs: non-finite loss or gradient at iteration {k}")
        if stopped == "budget" and pt is not None and norm <= self.tolerance:
            stopped = "tolerance"
        return InnerResult(y, k, norm, stopped == "tolerance", memory)

    def _step(self, cur, memory, evaluate, k):
        def direction(steepest):
            d = -cur.grad if steepest else -memory.apply(cur.grad)
            return d, torch.dot(cur.grad, d).item(), d.norm().item()

        def search(d, slope, norm):
            trial = lambda alpha: evaluate(cur.y + alpha * d, d, alpha)
            if self.line_search == "fixed":
                p = trial(self.step_size)
                if not (finite(p.value) and finite(p.gradient_norm)):
                    raise Divergence(f"lbfgs: non-finite loss or gradient at iteration {k + 1}")
                return p
            # First step without curvature: keep ‖αd‖ ≤ 1; afterwards the unit step.
            alpha0 = min(1.0, 1.0 / norm) if len(memory) == 0 else 1.0
            return strong_wolfe(trial, cur.value, slope, alpha0, self.c1, self.c2, self.value_noise, self.max_line_search_steps)

        d, slope, norm = direction(False)
        restarted = False
        needs_descent = self.line_search != "fixed"
        if needs_descent and not slope < 0:
            memory.clear()
            d, slope, norm = direction(True)
            restarted = True
        point = search(d, slope, norm)
        if point is None and needs_descent and not restarted and len(memory) > 0:
            memory.clear()
            d, slope, norm = direction(True)
            point = search(d, slope, norm)
        return point


# ————— linear solvers and estimators —————


def conjugate_gradient(matvec, b, init=None, max_iterations=100, tolerance=1e-6, rcond=1e-6):
    """CG from init (or 0), keeping the iterate of smallest residual (estimators/linear-solve)."""
    b_norm = b.norm().item()
    if not bool(torch.isfinite(b).all()):
        raise Divergence("conjugate gradient: non-finite right-hand side")
    x = init.clone() if init is not None else torch.zeros_like(b)
    r = b - matvec(x) if init is not None else b.clone()
    p = r.clone()
    rs = torch.dot(r, r).item()
    best, best_residual = x, math.sqrt(rs)
    max_curvature = 0.0
    iterations = 0
    target = tolerance * b_norm
    while iterations < max_iterations and math.sqrt(rs) > target and rs > 0:
        ap = matvec(p)
        pap = torch.dot(p, ap).item()
        pp = torch.dot(p, p).item()
        iterations += 1
        curvature = pap / pp
        if not pap > 0 or not curvature > rcond * max_curvature:
            break
        max_curvature = max(max_curvature, curvature)
        alpha = rs / pap
        x = x + alpha * p
        r = r - alpha * ap
        rs2 = torch.dot(r, r).item()
        p = r + (rs2 / rs) * p
        rs = rs2
        if math.sqrt(rs) < best_residual:
            best, best_residual = x, math.sqrt(rs)
    return best


def fixed_point(matvec, b, init=None, max_iterations=20, step_size=1.0, tolerance=0.0):
    """Richardson iteration u ← u + η(b − Au), the residual carried along (estimators/linear-solve)."""
    b_norm = b.norm().item()
    if not bool(torch.isfinite(b).all()):
        raise Divergence("fixed point: non-finite right-hand side")
    x = init.clone() if init is not None else torch.zeros_like(b)
    r = b - matvec(x) if init is not None else b.clone()
    residual = r.norm().item()
    target = tolerance * b_norm
    iterations = 0
    while iterations < max_iterations and not residual <= target:
        x = x + step_size * r
        r = r - step_size * matvec(r)
        iterations += 1
        if tolerance > 0 or iterations == max_iterations:
            residual = r.norm().item()
    return x


@dataclass
class Context:
    oracles: Oracles
    x: torch.Tensor
    inner: InnerResult
    y0: torch.Tensor
    solver: object
    step: int


class ImplicitEstimator:
    """AID: u ≈ [∇²_yy g]⁻¹∇_y f by a linear solver warm-started from the last u; ∇Φ ≈ ∇ₓf − ∇²ₓᵧg·u."""

    def __init__(self, solve, warm_start=True):
        self.solve = solve
        self.warm_start = warm_start
        self.u = None

    def estimate(self, c):
        y = c.inner.y
        _, gx, gy = c.oracles.outer_grads(c.x, y)
        u = self.solve(lambda v: c.oracles.hessian_vector(c.x, y, v), gy, self.u if self.warm_start else None)
        if self.warm_start:
            self.u = u.clone()
        return gx - c.oracles.mixed_vector(c.x, y, u)


def cg_estimator(maxIterations=20, tolerance=1e-6, warmStart=True):
    return ImplicitEstimator(
        lambda mv, b, init: conjugate_gradient(mv, b, init, max_iterations=maxIterations, tolerance=tolerance), warmStart
    )


def fixed_point_estimator(maxIterations=20, stepSize=0.1, tolerance=0.0, warmStart=True):
    return ImplicitEstimator(
        lambda mv, b, init: fixed_point(mv, b, init, max_iterations=maxIterations, step_size=stepSize, tolerance=tolerance),
        warmStart,
    )


class Qnbo:
    """qNBO's subroutine B ('steps' pairs, BFGS): quasi-Newton iterations on ½uᵀAu − bᵀu along b = ∇_y f."""

    def __init__(
        self,
        update="bfgs",
        mode="fresh",
        passes=10,
        passesGrowth=0,
        maxPasses=50,
        memory=20,
        initialScaling="auto",
        curvatureEpsilon=1e-10,
        sr1SkipThreshold=1e-8,
        pairs="steps",
        tolerance=0.0,
        probeScale=1.0,
    ):
        if update != "bfgs" or mode != "fresh" or pairs != "steps":
            raise NotImplementedError("the twin's qnbo has update 'bfgs', mode 'fresh', pairs 'steps' only")
        self.passes, self.growth, self.max_passes = passes, passesGrowth, maxPasses
        self.memory_options = (memory, initialScaling, curvatureEpsilon)
        self.tolerance = tolerance
        self.tau = probeScale

    def estimate(self, c):
        y = c.inner.y
        _, gx, b = c.oracles.outer_grads(c.x, y)
        memory = LbfgsMemory(*self.memory_options)
        passes_k = min(self.max_passes, self.passes + math.floor(self.growth * c.step))
        b_norm = b.norm().item()
        g0 = c.oracles.inner_grad_y(c.x, y)

        def secant(v):
            return (c.oracles.inner_grad_y(c.x, y + self.tau * v) - g0) / self.tau

        u = torch.zeros_like(b)
        grad = -b
        residual = b_norm
        target = self.tolerance * b_norm
        done = 0
        while done < passes_k and not residual <= target:
            d = -memory.apply(grad)
            u2 = u + d
            g2 = secant(u2) - b
            memory.push(d, g2 - grad)
            residual = g2.norm().item()
            u, grad = u2, g2
            done += 1
        return gx - c.oracles.mixed_vector(c.x, y, u)


class EvolutionStrategies:
    """ESJ: the Q perturbed solves from y0 at x + μu_q, batched as one stacked solve (estimators es)."""

    def __init__(self, directions=10, smoothing=0.01, distribution="gaussian", antithetic=False, unbiased=True, batchedSolves=True, maxBatchSize=None):
        if distribution != "gaussian" or antithetic or maxBatchSize is not None:
            raise NotImplementedError("the twin's es has Gaussian one-sided directions in one batch only")
        self.q = directions
        self.mu = smoothing
        self.batched = batchedSolves

    def estimate(self, c):
        y = c.inner.y
        _, gx, gy = c.oracles.outer_grads(c.x, y)
        U = torch.randn(self.q, c.x.numel())
        budget = None if c.inner.converged else c.inner.iterations
        if self.batched and c.solver.elementwise and hasattr(c.oracles.problem, "inner_loss_batched"):
            xs = c.x.unsqueeze(0) + self.mu * U
            ys0 = c.y0.unsqueeze(0).expand(self.q, -1)
            res = c.solver.solve(c.oracles, xs, ys0, budget, batched=True)
            coef = (res.y - y) @ gy
        else:
            coef = torch.stack(
                [torch.dot(c.solver.solve(c.oracles, c.x + self.mu * U[j], c.y0, budget).y - y, gy) for j in range(self.q)]
            )
        return gx + (coef / self.mu) @ U / self.q


def make_solver(plugin):
    o = plugin["options"]
    if plugin["name"] == "gd":
        return GradientDescent(**o)
    if plugin["name"] == "lbfgs":
        return Lbfgs(**o)
    raise NotImplementedError(f"no twin of inner solver '{plugin['name']}'")


def make_estimator(plugin):
    o = plugin["options"]
    name = plugin["name"]
    if name == "cg":
        return cg_estimator(**o)
    if name == "fixed-point":
        return fixed_point_estimator(**o)
    if name == "qnbo":
        return Qnbo(**o)
    if name == "es":
        return EvolutionStrategies(**o)
    raise NotImplementedError(f"no twin of estimator '{name}'")


# ————— outer optimizers and the trainer —————


class OuterGd:
    def __init__(self, x, learningRate=0.1):
        self.lr = learningRate

    def step(self, x, g):
        return x - self.lr * g


class OuterAdam:
    """torch.optim.Adam on x (the same bias-corrected update as core's adam)."""

    def __init__(self, x, learningRate=0.001, beta1=0.9, beta2=0.999, epsilon=1e-8):
        self.param = x.detach().clone().requires_grad_(True)
        self.opt = torch.optim.Adam([self.param], lr=learningRate, betas=(beta1, beta2), eps=epsilon)

    def step(self, x, g):
        self.param.grad = g
        self.opt.step()
        return self.param.detach()


def make_optimizer(plugin, x):
    if plugin["name"] == "gd":
        return OuterGd(x, **plugin["options"])
    if plugin["name"] == "adam":
        return OuterAdam(x, **plugin["options"])
    raise NotImplementedError(f"no twin of outer optimizer '{plugin['name']}'")


class Trainer:
    """One outer step as core's Trainer.stepOnce: warm-started inner solve, estimate, ‖∇Φ‖ and f read, update."""

    def __init__(self, problem, spec):
        self.problem = problem
        self.oracles = Oracles(problem)
        self.solver = make_solver(spec["innerSolver"])
        self.estimator = make_estimator(spec["estimator"])
        self.x = problem.initial_x()
        self.y = problem.initial_y()
        self.optimizer = make_optimizer(spec["outerOptimizer"], self.x)
        self.warm_start = spec.get("warmStart", True)
        self.steps = 0
        self.outer_loss = math.nan
        self.outer_loss_first = math.nan

    def step(self):
        if hasattr(self.problem, "begin_step"):
            self.problem.begin_step()
        x = self.x
        y0 = self.y if self.warm_start else self.problem.initial_y()
        inner = self.solver.solve(self.oracles, x, y0)
        hypergradient = self.estimator.estimate(Context(self.oracles, x, inner, y0, self.solver, self.steps))
        gradient_norm = hypergradient.norm().item()
        with torch.no_grad():
            outer_loss = self.problem.outer_loss(x, inner.y).item()
        if not (finite(gradient_norm) and finite(outer_loss) and finite(inner.gradient_norm)):
            raise Divergence(f"outer step {self.steps + 1}: non-finite value")
        self.x = self.optimizer.step(x, hypergradient)
        self.y = inner.y
        self.steps += 1
        if self.steps == 1:
            self.outer_loss_first = outer_loss
        self.outer_loss = outer_loss
        return outer_loss
