"""Image files as network inputs: decode with Pillow, ImageNet-style preprocessing in numpy.

``preprocess_rgb`` is the standard evaluation transform: resize so the shorter side is
``resize`` pixels (bilinear), center-crop ``size`` x ``size``, scale to [0, 1], subtract the
per-channel mean and divide by the std, channels first. ``preprocess_gray`` does the same for
single-channel models (MNIST: resize to the input size, [0, 1], optional inversion so the
digit is bright on a dark background).
"""

from __future__ import annotations

import os

import numpy as np

from ..errors import InputError

__all__ = ["load_image", "preprocess_rgb", "preprocess_gray", "IMAGENET_MEAN", "IMAGENET_STD"]

#: torchvision's ImageNet normalisation (RGB, on [0, 1] pixels).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


#: PIL modes of 16-bit grayscale pixels: scaled to 8 bits (``round(v / 257)``), not clipped.
_SIXTEEN_BIT = ("I;16", "I;16L", "I;16B", "I;16N")


def load_image(path, mode: str = "RGB") -> np.ndarray:
    """The image at ``path`` as uint8, ``(H, W, 3)`` for mode RGB or ``(H, W)`` for mode L.

    8-bit images of any PIL mode (palette, grayscale, CMYK, with alpha: dropped) are converted
    by PIL; 16-bit grayscale is scaled to 8 bits over its full range (a grayscale image read
    for an RGB model repeats its channel). Images whose pixel values have no fixed range
    (32-bit integer or float pixels) are refused, and so is an image of more pixels than
    PIL's decompression-bomb limit.

    Raises InputError naming the file when it is missing, refused or not a decodable image.
    """
    import warnings

    from PIL import Image, UnidentifiedImageError

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise InputError(f"{path}: no such image file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                im.load()
                # a 16-bit PNG may open as 32-bit "I": its values are still 0..65535
                if im.mode in _SIXTEEN_BIT or (im.mode == "I" and im.format == "PNG"):
                    gray = np.rint(np.asarray(im, dtype=np.float64) / 257.0).astype(np.uint8)
                    im = Image.fromarray(gray, "L")
                elif im.mode in ("I", "F"):
                    raise InputError(f"{path}: {'32-bit integer' if im.mode == 'I' else 'float'}"
                                     f" pixels have no fixed range; save the image with 8 or "
                                     f"16 bits per channel")
                return np.asarray(im.convert(mode), dtype=np.uint8).copy()
    except InputError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise InputError(f"{path}: too many pixels to decode safely ({exc})") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise InputError(f"{path}: not a readable image ({str(exc).strip() or type(exc).__name__})"
                         ) from None


def _resize(img: np.ndarray, width: int, height: int) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.fromarray(img).resize((width, height), Image.BILINEAR))


def preprocess_rgb(img: np.ndarray, size: int = 224, resize: int | None = 256,
                   mean=IMAGENET_MEAN, std=IMAGENET_STD) -> np.ndarray:
    """An RGB uint8 image ``(H, W, 3)`` as a normalised float32 ``(3, size, size)`` tensor.

    ``resize``: shorter side before the center crop, pixels (None: ``round(size * 256/224)``).
    ``mean``/``std``: per channel, on pixels scaled to [0, 1].
    """
    img = np.asarray(img)
    if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
        raise InputError(f"expected an RGB uint8 image (H, W, 3), got {img.dtype} {img.shape}")
    if resize is None:
        resize = int(round(size * 256 / 224))
    if resize < size:
        raise InputError(f"resize={resize} must be >= crop size {size}")
    h, w = img.shape[:2]
    if h <= w:
        nh, nw = resize, max(resize, int(round(w * resize / h)))
    else:
        nh, nw = max(resize, int(round(h * resize / w))), resize
    img = _resize(img, nw, nh)
    top, left = (nh - size) // 2, (nw - size) // 2
    img = img[top:top + size, left:left + size]
    x = img.astype(np.float32) / np.float32(255.0)
    x = (x - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    return np.ascontiguousarray(x.transpose(2, 0, 1))


def preprocess_gray(img: np.ndarray, size: int = 28, invert: bool | None = None) -> np.ndarray:
    """A grayscale uint8 image ``(H, W)`` as float32 ``(1, size, size)`` in [0, 1].

    ``invert``: flip dark-on-light to light-on-dark (MNIST polarity); None decides from the
    border (a bright border means a light background).
    """
    img = np.asarray(img)
    if img.ndim != 2 or img.dtype != np.uint8:
        raise InputError(f"expected a grayscale uint8 image (H, W), got {img.dtype} {img.shape}")
    if img.shape != (size, size):
        img = _resize(img, size, size)
    x = img.astype(np.float32) / np.float32(255.0)
    if invert is None:
        border = np.concatenate([x[0], x[-1], x[:, 0], x[:, -1]])
        invert = bool(border.mean() > 0.5)
    if invert:
        x = 1.0 - x
    return x[None]
