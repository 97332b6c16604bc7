"""ResNet-18 / ResNet-50 (torchvision layout, v1.5: a bottleneck strides on its 3x3 conv).

Node and parameter names follow torchvision's modules, so parameter names equal the keys of a
torchvision ``resnet18()`` / ``resnet50()`` state_dict (less ``num_batches_tracked``). Inside a
block the ReLUs are ``relu1``, ``relu2`` (bottleneck), the residual sum ``add`` and the block
output ``out``, e.g. ``layer1.0.out``.
"""

from __future__ import annotations

from .builder import GraphBuilder

__all__ = ["resnet_builder", "RESNET_LAYERS"]

#: Architecture name -> (block kind, blocks per stage).
RESNET_LAYERS = {
    "resnet18": ("basic", (2, 2, 2, 2)),
    "resnet34": ("basic", (3, 4, 6, 3)),
    "resnet50": ("bottleneck", (3, 4, 6, 3)),
    "resnet101": ("bottleneck", (3, 4, 23, 3)),
}


def _basic(b: GraphBuilder, p: str, x: str, cin: int, planes: int, stride: int) -> str:
    y = b.conv(f"{p}.conv1", x, cin, planes, 3, stride=stride, padding=1)
    y = b.relu(f"{p}.relu1", b.bn(f"{p}.bn1", y, planes))
    y = b.conv(f"{p}.conv2", y, planes, planes, 3, padding=1)
    y = b.bn(f"{p}.bn2", y, planes, branch_end=True)
    if stride != 1 or cin != planes:
        x = b.conv(f"{p}.downsample.0", x, cin, planes, 1, stride=stride)
        x = b.bn(f"{p}.downsample.1", x, planes)
    return b.relu(f"{p}.out", b.add(f"{p}.add", y, x))


def _bottleneck(b: GraphBuilder, p: str, x: str, cin: int, planes: int, stride: int) -> str:
    cout = planes * 4
    y = b.conv(f"{p}.conv1", x, cin, planes, 1)
    y = b.relu(f"{p}.relu1", b.bn(f"{p}.bn1", y, planes))
    y = b.conv(f"{p}.conv2", y, planes, planes, 3, stride=stride, padding=1)
    y = b.relu(f"{p}.relu2", b.bn(f"{p}.bn2", y, planes))
    y = b.conv(f"{p}.conv3", y, planes, cout, 1)
    y = b.bn(f"{p}.bn3", y, cout, branch_end=True)
    if stride != 1 or cin != cout:
        x = b.conv(f"{p}.downsample.0", x, cin, cout, 1, stride=stride)
        x = b.bn(f"{p}.downsample.1", x, cout)
    return b.relu(f"{p}.out", b.add(f"{p}.add", y, x))


def resnet_builder(arch: str = "resnet50", num_classes: int = 1000,
                   image_size: int = 224) -> GraphBuilder:
    """The nodes and parameter shapes of a torchvision ResNet (``arch`` in RESNET_LAYERS).

    Input ``(3, image_size, image_size)``, ``image_size >= 32``; output ``(num_classes,)``.
    """
    kind, layers = RESNET_LAYERS[arch]
    block, expansion = (_basic, 1) if kind == "basic" else (_bottleneck, 4)
    b = GraphBuilder(arch, (3, image_size, image_size))
    x = b.conv("conv1", "input", 3, 64, 7, stride=2, padding=3)
    x = b.relu("relu", b.bn("bn1", x, 64))
    x = b.maxpool("maxpool", x, 3, 2, 1)
    cin = 64
    for s, n in enumerate(layers):
        planes = 64 * 2 ** s
        for i in range(n):
            x = block(b, f"layer{s + 1}.{i}", x, cin, planes, 2 if (i == 0 and s > 0) else 1)
            cin = planes * expansion
    x = b.flatten("flatten", b.global_avgpool("avgpool", x))
    b.linear("fc", x, cin, num_classes)
    return b
