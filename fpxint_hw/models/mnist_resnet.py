"""A small ResNet for 28x28 MNIST digits (three BasicBlock stages of 16, 32, 64 channels).

Same naming scheme as the torchvision ResNets (``conv1``, ``bn1``, ``layer2.0.downsample.0``,
``fc``); ``models/train_mnist_resnet.py`` trains a PyTorch module with exactly these names.
About 78 k parameters and 9.3 M MAC per digit.
"""

from __future__ import annotations

from .builder import GraphBuilder
from .resnet import _basic

__all__ = ["mnist_resnet_builder", "MNIST_WIDTHS"]

#: Channels of the stem and of each stage; stages 2 and 3 halve the resolution.
MNIST_WIDTHS = (16, 32, 64)


def mnist_resnet_builder() -> GraphBuilder:
    """The nodes and parameter shapes: input ``(1, 28, 28)``, output ``(10,)`` logits."""
    b = GraphBuilder("mnist-resnet", (1, 28, 28))
    w0 = MNIST_WIDTHS[0]
    x = b.conv("conv1", "input", 1, w0, 3, padding=1)
    x = b.relu("relu", b.bn("bn1", x, w0))
    cin = w0
    for s, w in enumerate(MNIST_WIDTHS):
        x = _basic(b, f"layer{s + 1}.0", x, cin, w, 1 if s == 0 else 2)
        cin = w
    x = b.flatten("flatten", b.global_avgpool("avgpool", x))
    b.linear("fc", x, cin, 10)
    return b
