"""PyTorch twin of the speed section's ResNet-12 workload: forward (batch statistics) and backward of
½·mean over images of ‖φ(image)‖² with respect to every parameter, on the images and parameters the Bilevel
worker wrote (so both sides compute the same loss and gradient norm).
"""

import time

import torch

from backbones import make_backbone
from common import emit, load_arrays, run, time_steps


def main(config):
    w = config["workload"]
    spec = w["spec"]
    t0 = time.perf_counter()
    data = load_arrays(config["data"])
    model = make_backbone(spec["backbone"]["name"], spec["backbone"]["options"], spec["imageSize"], spec["channels"])
    model.load_library_parameters(data)
    images = data["images"].permute(0, 3, 1, 2).contiguous()  # NHWC → NCHW
    n = images.shape[0]
    params = list(model.parameters())
    setup = time.perf_counter() - t0
    last = {}

    def step():
        model.zero_grad(set_to_none=True)
        loss = model(images).pow(2).sum() / (2 * n)
        loss.backward()
        last["loss"] = loss.item()
        last["gradientNorm"] = torch.sqrt(sum(p.grad.pow(2).sum() for p in params)).item()

    times = time_steps(step, w["warmup"], w["steps"])
    emit(times, last, setup)


if __name__ == "__main__":
    run(main)
