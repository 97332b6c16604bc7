"""Image loading and ImageNet / MNIST preprocessing."""

import numpy as np
import pytest

from fpxint_hw.data import imagenet_classes
from fpxint_hw.models.samples import SAMPLE_PHOTOS, load_sample_photo
from fpxint_hw.errors import InputError
from fpxint_hw.io.images import load_image, preprocess_gray, preprocess_rgb


def test_preprocess_rgb_resizes_crops_and_normalises():
    # a 100x300 image: left third red, middle green, right blue
    img = np.zeros((100, 300, 3), np.uint8)
    img[:, :100, 0] = 255
    img[:, 100:200, 1] = 255
    img[:, 200:, 2] = 255
    x = preprocess_rgb(img, size=64, resize=80, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    assert x.shape == (3, 64, 64) and x.dtype == np.float32
    # resized to 80x240, center crop columns 88..152 -> all green, scaled to [-1, 1]
    np.testing.assert_allclose(x[1], 1.0, atol=1e-6)
    np.testing.assert_allclose(x[0], -1.0, atol=1e-6)
    np.testing.assert_allclose(x[2], -1.0, atol=1e-6)


def test_preprocess_default_imagenet_normalisation():
    img = np.full((300, 200, 3), 128, np.uint8)
    x = preprocess_rgb(img)
    assert x.shape == (3, 224, 224)
    want = (128 / 255 - np.array([0.485, 0.456, 0.406])) / np.array([0.229, 0.224, 0.225])
    np.testing.assert_allclose(x[:, 100, 100], want, rtol=1e-5)


def test_preprocess_gray_inverts_dark_on_light():
    img = np.full((56, 56), 255, np.uint8)
    img[20:36, 26:30] = 0                      # a dark stroke on white paper
    x = preprocess_gray(img)
    assert x.shape == (1, 28, 28)
    assert x[0, 0, 0] == 0.0 and x[0, 14, 14] > 0.8


def test_not_an_image_is_named(tmp_path):
    p = tmp_path / "fake.png"
    p.write_bytes(b"definitely not a png")
    with pytest.raises(InputError, match="fake.png: not a readable image"):
        load_image(p)
    with pytest.raises(InputError, match="no such image file"):
        load_image(tmp_path / "nope.jpg")


def test_shipped_photos_and_class_names():
    names = imagenet_classes()
    assert len(names) == 1000 and len(set(names)) >= 998
    assert names[281].startswith("tabby") and names[967] == "espresso"
    for p in SAMPLE_PHOTOS:
        img = load_sample_photo(p)
        assert img.dtype == np.uint8 and img.ndim == 3 and min(img.shape[:2]) == 256
        assert all(0 <= c < 1000 for c in p.classes)


def test_every_8_and_16_bit_mode_converts_and_float_pixels_are_refused(tmp_path):
    """16-bit grayscale is scaled over its full range (not clipped at 255), palette and
    CMYK go through PIL, grayscale repeats into RGB; float pixels are refused."""
    from PIL import Image

    from fpxint_hw.errors import InputError
    from fpxint_hw.io.images import load_image
    ramp = np.array([[0, 257, 32896, 65535]], dtype=np.uint16)
    Image.fromarray(ramp).save(tmp_path / "g16.png")
    got = load_image(tmp_path / "g16.png")
    assert got.shape == (1, 4, 3) and got[0, :, 0].tolist() == [0, 1, 128, 255]
    assert (got[..., 0] == got[..., 2]).all()
    Image.new("L", (3, 2), 77).save(tmp_path / "l.png")
    assert (load_image(tmp_path / "l.png") == 77).all()
    pal = Image.new("P", (2, 2))
    pal.putpalette([10, 20, 30] * 256)
    pal.save(tmp_path / "p.png")
    assert load_image(tmp_path / "p.png")[0, 0].tolist() == [10, 20, 30]
    Image.new("CMYK", (2, 2), (0, 0, 0, 0)).save(tmp_path / "c.jpg")
    assert load_image(tmp_path / "c.jpg").min() >= 250          # no ink: white
    Image.fromarray(np.zeros((2, 2), np.float32)).save(tmp_path / "f.tiff")
    with pytest.raises(InputError, match="f.tiff: float pixels"):
        load_image(tmp_path / "f.tiff")
