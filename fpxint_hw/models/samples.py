"""The shipped sample inputs: real photos for the ImageNet models, held-out MNIST digits."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from ..data import resource
from ..errors import InputError

__all__ = ["SamplePhoto", "SAMPLE_PHOTOS", "load_sample_photo", "mnist_heldout"]


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
        return resource("images", f"{self.name}.png")


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


def load_sample_photo(photo: SamplePhoto | str) -> np.ndarray:
    """The photo (a :class:`SamplePhoto` or its name) as RGB uint8 ``(H, W, 3)``."""
    from ..io.images import load_image

    if isinstance(photo, str):
        by_name = {p.name: p for p in SAMPLE_PHOTOS}
        if photo not in by_name:
            raise InputError(f"no sample photo {photo!r} (have: {', '.join(by_name)})")
        photo = by_name[photo]
    return load_image(photo.path)


@lru_cache(maxsize=1)
def mnist_heldout() -> tuple[np.ndarray, np.ndarray]:
    """The 1,000 held-out MNIST digits: uint8 images ``(1000, 28, 28)``, int64 labels 0..9."""
    from ..io.npz import load_arrays

    d = load_arrays(resource("mnist_heldout.npz"))
    images, labels = d["images"], d["labels"].astype("int64")
    images.flags.writeable = False
    labels.flags.writeable = False
    return images, labels
