"""MobileNetV3-Small in plain torch, written from torchvision's definition (module names as
torchvision's ``mobilenet_v3_small``): the outside reference the zoo model is checked
against. torchvision itself is not installed here."""

import torch
from torch import nn

#: (kernel, expanded, out, squeeze-excitation, activation, stride), torchvision's table.
BLOCKS = [(3, 16, 16, True, "RE", 2), (3, 72, 24, False, "RE", 2),
          (3, 88, 24, False, "RE", 1), (5, 96, 40, True, "HS", 2),
          (5, 240, 40, True, "HS", 1), (5, 240, 40, True, "HS", 1),
          (5, 120, 48, True, "HS", 1), (5, 144, 48, True, "HS", 1),
          (5, 288, 96, True, "HS", 2), (5, 576, 96, True, "HS", 1),
          (5, 576, 96, True, "HS", 1)]

#: torchvision's _make_divisible(expanded // 4, 8) for the expansions above.
SQUEEZE = {16: 8, 96: 24, 240: 64, 120: 32, 144: 40, 288: 72, 576: 144}


def conv_bn_act(cin, cout, k, stride=1, groups=1, act=None):
    layers = [nn.Conv2d(cin, cout, k, stride, (k - 1) // 2, groups=groups, bias=False),
              nn.BatchNorm2d(cout, eps=0.001, momentum=0.01)]
    if act is not None:
        layers.append(nn.Hardswish() if act == "HS" else nn.ReLU())
    return nn.Sequential(*layers)


class SqueezeExcitation(nn.Module):
    def __init__(self, c, squeeze):
        super().__init__()
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(c, squeeze, 1)
        self.fc2 = nn.Conv2d(squeeze, c, 1)
        self.relu = nn.ReLU()
        self.scale_activation = nn.Hardsigmoid()

    def forward(self, x):
        s = self.scale_activation(self.fc2(self.relu(self.fc1(self.avgpool(x)))))
        return s * x


class InvertedResidual(nn.Module):
    def __init__(self, cin, k, mid, cout, se, act, stride):
        super().__init__()
        self.residual = stride == 1 and cin == cout
        layers = []
        if mid != cin:
            layers.append(conv_bn_act(cin, mid, 1, act=act))
        layers.append(conv_bn_act(mid, mid, k, stride, groups=mid, act=act))
        if se:
            layers.append(SqueezeExcitation(mid, SQUEEZE[mid]))
        layers.append(conv_bn_act(mid, cout, 1))
        self.block = nn.Sequential(*layers)

    def forward(self, x):
        y = self.block(x)
        return y + x if self.residual else y


class MobileNetV3Small(nn.Module):
    def __init__(self, num_classes=1000):
        super().__init__()
        layers, cin = [conv_bn_act(3, 16, 3, 2, act="HS")], 16
        for k, mid, cout, se, act, stride in BLOCKS:
            layers.append(InvertedResidual(cin, k, mid, cout, se, act, stride))
            cin = cout
        layers.append(conv_bn_act(cin, 6 * cin, 1, act="HS"))
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Linear(6 * cin, 1024), nn.Hardswish(),
                                        nn.Dropout(0.2), nn.Linear(1024, num_classes))

    def forward(self, x):
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))
