"""MobileNetV3-Small with torchvision's module and parameter names (``features.4.block.2.fc1``,
``classifier.3``), so a torchvision ``mobilenet_v3_small`` state_dict loads.

A bottleneck block (``features.1`` .. ``features.11``) is: 1x1 expand -> BN -> act (absent
when the expansion keeps the channel count) -> k x k depthwise (stride s) -> BN -> act ->
squeeze-and-excitation (global average -> 1x1 conv ``fc1`` -> ReLU -> 1x1 conv ``fc2`` ->
hardsigmoid -> times the map) where used -> 1x1 project -> BN (+ input when stride 1 and the
channel count is unchanged). ``act`` is ReLU or HardSwish. The stem (``features.0``) and the
last 1x1 conv (``features.12``) use HardSwish; the classifier is Linear(576, 1024) ->
HardSwish -> Linear(1024, classes). BatchNorm eps is 1e-3, as torchvision's.
"""

from __future__ import annotations

from .builder import GraphBuilder

__all__ = ["mobilenet_v3_small_builder", "SMALL_BLOCKS", "make_divisible"]

#: (kernel, expanded channels, output channels, squeeze-excitation, activation, stride) of
#: the eleven bottleneck blocks, input channels 16.
SMALL_BLOCKS = (
    (3, 16, 16, True, "RE", 2),
    (3, 72, 24, False, "RE", 2),
    (3, 88, 24, False, "RE", 1),
    (5, 96, 40, True, "HS", 2),
    (5, 240, 40, True, "HS", 1),
    (5, 240, 40, True, "HS", 1),
    (5, 120, 48, True, "HS", 1),
    (5, 144, 48, True, "HS", 1),
    (5, 288, 96, True, "HS", 2),
    (5, 576, 96, True, "HS", 1),
    (5, 576, 96, True, "HS", 1),
)

_EPS = 1e-3


def make_divisible(v: float, divisor: int = 8) -> int:
    """The channel count torchvision rounds ``v`` to: a multiple of ``divisor``, at least
    ``divisor``, never below 90 % of ``v``."""
    new = max(divisor, int(v + divisor / 2) // divisor * divisor)
    return new + divisor if new < 0.9 * v else new


def _conv_bn_act(b: GraphBuilder, p: str, x: str, cin: int, cout: int, k: int,
                 stride: int = 1, groups: int = 1, act: str | None = None,
                 branch_end: bool = False) -> str:
    """torchvision's Conv2dNormActivation ``p``: conv ``p.0``, BN ``p.1``, activation
    ``p.2`` (none for a projection)."""
    pad = (k - 1) // 2
    y = b.conv(f"{p}.0", x, cin, cout, k, stride=stride, padding=pad, groups=groups)
    y = b.bn(f"{p}.1", y, cout, _EPS, branch_end=branch_end)
    if act == "HS":
        return b.hardswish(f"{p}.2", y)
    if act == "RE":
        return b.relu(f"{p}.2", y)
    return y


def mobilenet_v3_small_builder(image_size: int = 224, num_classes: int = 1000) -> GraphBuilder:
    """The nodes and parameter shapes: input ``(3, image_size, image_size)``, output logits."""
    b = GraphBuilder("mobilenet-v3-small", (3, image_size, image_size))
    x = _conv_bn_act(b, "features.0", "input", 3, 16, 3, stride=2, act="HS")
    cin = 16
    for i, (k, mid, cout, se, act, stride) in enumerate(SMALL_BLOCKS, start=1):
        p, j, y = f"features.{i}.block", 0, x
        residual = stride == 1 and cin == cout
        if mid != cin:
            y = _conv_bn_act(b, f"{p}.{j}", y, cin, mid, 1, act=act)
            j += 1
        y = _conv_bn_act(b, f"{p}.{j}", y, mid, mid, k, stride=stride, groups=mid, act=act)
        j += 1
        if se:
            q, sq = f"{p}.{j}", make_divisible(mid // 4)
            g = b.global_avgpool(f"{q}.avgpool", y)
            g = b.relu(f"{q}.relu", b.conv(f"{q}.fc1", g, mid, sq, 1, bias=True))
            g = b.hardsigmoid(f"{q}.scale_activation", b.conv(f"{q}.fc2", g, sq, mid, 1,
                                                              bias=True))
            y = b.mul(f"{q}.mul", y, g)
            j += 1
        y = _conv_bn_act(b, f"{p}.{j}", y, mid, cout, 1, branch_end=residual)
        x = b.add(f"features.{i}.add", y, x) if residual else y
        cin = cout
    x = _conv_bn_act(b, "features.12", x, cin, 6 * cin, 1, act="HS")
    x = b.flatten("flatten", b.global_avgpool("avgpool", x))
    x = b.hardswish("classifier.1", b.linear("classifier.0", x, 6 * cin, 1024))
    b.linear("classifier.3", x, 1024, num_classes)
    return b
