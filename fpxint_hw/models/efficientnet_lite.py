"""EfficientNet-Lite0 with the module and parameter names of the ``efficientnet-lite-pytorch``
package (``_conv_stem``, ``_blocks.3._depthwise_conv``, ``_fc``), so its state_dict loads.

Lite variants use ReLU6 and no squeeze-excitation; every convolution pads like TensorFlow's
"SAME" (asymmetric for stride 2, computed for the given image size), batch-norm eps is 1e-3.
An MBConv block is: 1x1 expand (ratio 6, absent in the first block) -> BN -> ReLU6 ->
k x k depthwise (stride s) -> BN -> ReLU6 -> 1x1 project -> BN (+ input when stride 1 and the
channel count is unchanged). Activation nodes are ``_act0`` / ``_act1`` inside a block,
``_stem_act`` and ``_head_act`` outside.
"""

from __future__ import annotations

from .builder import GraphBuilder, same_padding

__all__ = ["efficientnet_lite0_builder", "LITE0_STAGES"]

#: (repeats, kernel, stride, expand ratio, input channels, output channels) per stage.
LITE0_STAGES = (
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
)

_EPS = 1e-3


def _same(size: int, k: int, s: int) -> tuple[int, int, int, int]:
    a, b = same_padding(size, k, s)
    return (a, a, b, b)


def efficientnet_lite0_builder(image_size: int = 224, num_classes: int = 1000) -> GraphBuilder:
    """The nodes and parameter shapes: input ``(3, image_size, image_size)``, output logits."""
    b = GraphBuilder("efficientnet-lite0", (3, image_size, image_size))
    size = image_size
    x = b.conv("_conv_stem", "input", 3, 32, 3, stride=2, padding=_same(size, 3, 2))
    x = b.relu6("_stem_act", b.bn("_bn0", x, 32, _EPS))
    size = -(-size // 2)
    idx = 0
    for repeats, k, stride, expand, cin, cout in LITE0_STAGES:
        for r in range(repeats):
            s, ci = (stride, cin) if r == 0 else (1, cout)
            p = f"_blocks.{idx}"
            mid = ci * expand
            y = x
            if expand != 1:
                y = b.conv(f"{p}._expand_conv", y, ci, mid, 1)
                y = b.relu6(f"{p}._act0", b.bn(f"{p}._bn0", y, mid, _EPS))
            y = b.conv(f"{p}._depthwise_conv", y, mid, mid, k, stride=s, groups=mid,
                       padding=_same(size, k, s))
            y = b.relu6(f"{p}._act1", b.bn(f"{p}._bn1", y, mid, _EPS))
            size = -(-size // s)
            y = b.conv(f"{p}._project_conv", y, mid, cout, 1)
            y = b.bn(f"{p}._bn2", y, cout, _EPS, branch_end=(s == 1 and ci == cout))
            x = b.add(f"{p}._add", y, x) if (s == 1 and ci == cout) else y
            idx += 1
    x = b.conv("_conv_head", x, 320, 1280, 1)
    x = b.relu6("_head_act", b.bn("_bn1", x, 1280, _EPS))
    x = b.flatten("_flatten", b.global_avgpool("_avg_pooling", x))
    b.linear("_fc", x, 1280, num_classes)
    return b
