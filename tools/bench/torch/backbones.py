"""The few-shot backbones of packages/meta-learning as PyTorch modules (NCHW), layer for layer.

ResNet-12 (packages/meta-learning/src/resnet12.ts): four residual blocks of widths 64, 160, 320, 640; block i:
h = BN₃(conv₃(σ(BN₂(conv₂(σ(BN₁(conv₁ x))))))), s = BN_s(conv_s x) (1×1), out = maxpool₂ₓ₂(σ(h + s)), σ = LeakyReLU
0.1, 3×3 convolutions without bias and 'same' padding, DropBlock off; then global average pooling.
Conv-4 (conv4.ts): four blocks of 3×3 conv (no bias), BN, ReLU, 2×2 max-pooling; the features flattened.
Batch norm always uses the statistics of the batch (the library's training mode, no running statistics); with
``groups`` > 1 each of the equal consecutive parts of the batch (one per few-shot task) is normalized on its own.
Convolution weights start He-normal in fan-out mode, N(0, 2/(k²·c_out)), as in the library.
"""

import torch
import torch.nn as nn
import torch.nn.functional as F


class GroupBatchNorm2d(nn.Module):
    def __init__(self, channels, eps=1e-5):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, h, groups=1):
        if groups == 1:
            return F.batch_norm(h, None, None, self.weight, self.bias, training=True, eps=self.eps)
        n, c, height, width = h.shape
        g = h.view(groups, n // groups, c, height, width)
        mean = g.mean(dim=(1, 3, 4), keepdim=True)
        var = g.var(dim=(1, 3, 4), unbiased=False, keepdim=True)
        g = (g - mean) * torch.rsqrt(var + self.eps)
        return g.view(n, c, height, width) * self.weight.view(1, c, 1, 1) + self.bias.view(1, c, 1, 1)


def he_normal_(module):
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
    return module


class ResidualBlock(nn.Module):
    def __init__(self, cin, cout, slope, eps):
        super().__init__()
        self.slope = slope
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1, bias=False)
        self.bn1 = GroupBatchNorm2d(cout, eps)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = GroupBatchNorm2d(cout, eps)
        self.conv3 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn3 = GroupBatchNorm2d(cout, eps)
        self.shortcut = nn.Conv2d(cin, cout, 1, bias=False)
        self.shortcut_bn = GroupBatchNorm2d(cout, eps)

    def forward(self, x, groups=1):
        h = F.leaky_relu(self.bn1(self.conv1(x), groups), self.slope)
        h = F.leaky_relu(self.bn2(self.conv2(h), groups), self.slope)
        h = self.bn3(self.conv3(h), groups)
        s = self.shortcut_bn(self.shortcut(x), groups)
        return F.max_pool2d(F.leaky_relu(h + s, self.slope), 2)


class ResNet12(nn.Module):
    def __init__(self, channels=3, widths=(64, 160, 320, 640), leaky_slope=0.1, eps=1e-5):
        super().__init__()
        cins = [channels, *widths[:3]]
        self.blocks = nn.ModuleList(ResidualBlock(c, w, leaky_slope, eps) for c, w in zip(cins, widths))
        he_normal_(self)

    def forward(self, x, groups=1):
        for block in self.blocks:
            x = block(x, groups)
        return x.mean(dim=(2, 3))

    def load_library_parameters(self, arrays):
        """Copies the library's parameters (``param:block<i>.conv<j>.filter`` [k, k, c_in, c_out], …) in."""
        with torch.no_grad():
            for i, block in enumerate(self.blocks, start=1):
                for ours, theirs in [("conv1", "conv1"), ("conv2", "conv2"), ("conv3", "conv3"), ("shortcut", "shortcut")]:
                    getattr(block, ours).weight.copy_(arrays[f"param:block{i}.{theirs}.filter"].permute(3, 2, 0, 1))
                for ours, theirs in [("bn1", "bn1"), ("bn2", "bn2"), ("bn3", "bn3"), ("shortcut_bn", "shortcutBn")]:
                    getattr(block, ours).weight.copy_(arrays[f"param:block{i}.{theirs}.gamma"])
                    getattr(block, ours).bias.copy_(arrays[f"param:block{i}.{theirs}.beta"])


class Conv4(nn.Module):
    def __init__(self, channels=1, filters=64, eps=1e-5):
        super().__init__()
        self.convs = nn.ModuleList(nn.Conv2d(channels if i == 0 else filters, filters, 3, padding=1, bias=False) for i in range(4))
        self.bns = nn.ModuleList(GroupBatchNorm2d(filters, eps) for _ in range(4))
        he_normal_(self)

    def forward(self, x, groups=1):
        for conv, bn in zip(self.convs, self.bns):
            x = F.max_pool2d(F.relu(bn(conv(x), groups)), 2)
        # Flattened in the library's (height, width, channel) order.
        return x.permute(0, 2, 3, 1).flatten(1)

    def load_library_parameters(self, arrays):
        """Copies the library's parameters (``param:block<i>.conv.filter`` [3, 3, c_in, c_out], …) in."""
        with torch.no_grad():
            for i, (conv, bn) in enumerate(zip(self.convs, self.bns), start=1):
                conv.weight.copy_(arrays[f"param:block{i}.conv.filter"].permute(3, 2, 0, 1))
                bn.weight.copy_(arrays[f"param:block{i}.bn.gamma"])
                bn.bias.copy_(arrays[f"param:block{i}.bn.beta"])


def make_backbone(name, options, image_size, channels):
    if name == "resnet12":
        o = {k: v for k, v in options.items() if k not in ("imageSize", "channels")}
        if o.get("dropBlock", {}).get("enabled"):
            raise NotImplementedError("the twin's ResNet-12 has no DropBlock")
        return ResNet12(channels, tuple(o.get("widths", (64, 160, 320, 640))), o.get("leakySlope", 0.1), o.get("batchNormEpsilon", 1e-5))
    if name == "conv4":
        if options.get("bias"):
            raise NotImplementedError("the twin's Conv-4 has no convolution bias")
        return Conv4(channels, options.get("filters", 64), options.get("batchNormEpsilon", 1e-5))
    raise NotImplementedError(f"no twin of backbone '{name}'")
