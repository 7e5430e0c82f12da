"""Decoding (SPEC §2 "Decoding") and the two model inputs built from the same pixels."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from featstore.extraction.images import (
    UnreadableImageError,
    decode_image,
    detector_input,
    dinov2_input,
    is_image_file,
)

PAD_VALUE = (0.0 - 127.5) / 128.0  # a black letterbox pixel after InsightFace's normalisation


def _noise_rgb(width: int, height: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(height, width, 3), dtype=np.uint8)


def _smooth_rgb(width: int, height: int) -> np.ndarray:
    """A smooth gradient: survives JPEG with small errors, so pixels can be compared."""
    ys, xs = np.mgrid[:height, :width]
    return np.stack(
        [xs * 255 // max(width - 1, 1), ys * 255 // max(height - 1, 1), (xs + ys) % 256 // 2],
        axis=-1,
    ).astype(np.uint8)


# --- decode_image ------------------------------------------------------------------------


def test_decodes_a_good_jpeg(tmp_path: Path) -> None:
    pixels = _smooth_rgb(64, 48)
    path = tmp_path / "good.jpg"
    Image.fromarray(pixels).save(path, quality=95)
    img = decode_image(path)
    assert img.mode == "RGB"
    assert img.size == (64, 48)
    # JPEG is lossy, but a smooth gradient at quality 95 stays close.
    assert np.abs(np.asarray(img, dtype=np.int16) - pixels).mean() < 3.0


def test_png_named_jpg_is_decoded_by_content(tmp_path: Path) -> None:
    pixels = _noise_rgb(33, 17)
    path = tmp_path / "really_a_png.jpg"
    Image.fromarray(pixels).save(path, format="PNG")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    img = decode_image(path)
    assert img.mode == "RGB"
    assert img.size == (33, 17)
    np.testing.assert_array_equal(np.asarray(img), pixels)  # lossless: exactly the pixels


@pytest.mark.parametrize(
    ("mode", "fmt", "name"),
    [
        ("L", "JPEG", "gray.jpg"),
        ("L", "PNG", "gray.png"),
        ("1", "PNG", "bilevel.png"),
        ("LA", "PNG", "gray_alpha.png"),
        ("CMYK", "JPEG", "cmyk.jpg"),
        ("RGBA", "PNG", "rgba.png"),
        ("P", "PNG", "palette.png"),
        ("P", "BMP", "palette.bmp"),
        ("I;16", "PNG", "sixteen_bit.png"),
        ("RGB", "WEBP", "colour.webp"),
    ],
)
def test_every_mode_becomes_rgb_of_the_same_size(
    tmp_path: Path, mode: str, fmt: str, name: str
) -> None:
    source = Image.fromarray(_noise_rgb(40, 30, seed=3)).convert(mode)
    path = tmp_path / name
    source.save(path, format=fmt)
    with Image.open(path) as stored:
        assert stored.mode == mode or (mode, stored.mode) == ("I;16", "I")  # really that mode
    img = decode_image(path)
    assert img.mode == "RGB"
    assert img.size == (40, 30)


def test_lossless_modes_convert_like_pillow(tmp_path: Path) -> None:
    rgb = _noise_rgb(20, 10, seed=5)
    # Grayscale: R = G = B = the grey level.
    gray = Image.fromarray(rgb).convert("L")
    gray.save(tmp_path / "g.png")
    decoded = np.asarray(decode_image(tmp_path / "g.png"))
    for channel in range(3):
        np.testing.assert_array_equal(decoded[:, :, channel], np.asarray(gray))
    # RGBA: the alpha channel is dropped, colour kept (no compositing on a background).
    alpha = np.random.default_rng(6).integers(0, 256, size=(10, 20, 1), dtype=np.uint8)
    Image.fromarray(np.concatenate([rgb, alpha], axis=-1), "RGBA").save(tmp_path / "a.png")
    np.testing.assert_array_equal(np.asarray(decode_image(tmp_path / "a.png")), rgb)
    # Palette: each index is replaced by its palette colour.
    palette = Image.fromarray(rgb).quantize(colors=16)
    palette.save(tmp_path / "p.png")
    np.testing.assert_array_equal(
        np.asarray(decode_image(tmp_path / "p.png")), np.asarray(palette.convert("RGB"))
    )


def test_cmyk_jpeg_matches_pillows_rgb(tmp_path: Path) -> None:
    Image.new("CMYK", (12, 8), (0, 0, 0, 0)).save(tmp_path / "white.jpg")
    img = decode_image(tmp_path / "white.jpg")
    assert img.mode == "RGB"
    assert img.size == (12, 8)
    assert np.asarray(img).min() >= 250  # no ink -> white


def test_no_exif_rotation(tmp_path: Path) -> None:
    # Stored 60x20 with EXIF orientation 6 ("rotate 90° CW to view"): decoded as stored.
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / "rotated.jpg"
    Image.fromarray(_smooth_rgb(60, 20)).save(path, exif=exif.tobytes())
    with Image.open(path) as stored:
        assert stored.getexif()[0x0112] == 6
    assert decode_image(path).size == (60, 20)


def test_zero_byte_file_is_unreadable(tmp_path: Path) -> None:
    path = tmp_path / "empty.jpg"
    path.write_bytes(b"")
    with pytest.raises(UnreadableImageError, match=r"empty file \(0 bytes\)"):
        decode_image(path)


def test_truncated_jpeg_is_unreadable(tmp_path: Path) -> None:
    whole = tmp_path / "whole.jpg"
    Image.fromarray(_noise_rgb(200, 150, seed=1)).save(whole, quality=90)
    data = whole.read_bytes()
    path = tmp_path / "half.jpg"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(UnreadableImageError, match="truncated") as info:
        decode_image(path)
    assert "\n" not in str(info.value)  # a one-line reason


def test_text_file_named_jpg_is_unreadable(tmp_path: Path) -> None:
    path = tmp_path / "notes.jpg"
    path.write_text("this is not an image\n")
    with pytest.raises(UnreadableImageError, match="cannot identify image file") as info:
        decode_image(path)
    assert "\n" not in str(info.value)


def test_corrupt_header_is_unreadable(tmp_path: Path) -> None:
    # A PNG signature followed by garbage.
    path = tmp_path / "bad.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4)
    with pytest.raises(UnreadableImageError):
        decode_image(path)


# --- is_image_file -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("a.jpg", True),
        ("a.JPG", True),
        ("a.Jpeg", True),
        ("a.png", True),
        ("a.PNG", True),
        ("a.bmp", True),
        ("a.webp", True),
        ("a.WEBP", True),
        ("a.txt", False),
        ("a.jpg.txt", False),
        ("a.gif", False),
        ("jpg", False),
        (".jpg", False),  # a hidden file with no suffix
    ],
)
def test_is_image_file_extension(tmp_path: Path, name: str, expected: bool) -> None:
    path = tmp_path / name
    path.write_bytes(b"x")
    assert is_image_file(path) is expected


def test_is_image_file_rejects_folders_and_missing_files(tmp_path: Path) -> None:
    folder = tmp_path / "album.jpg"
    folder.mkdir()
    assert is_image_file(folder) is False
    assert is_image_file(tmp_path / "missing.jpg") is False


# --- dinov2_input ------------------------------------------------------------------------


@pytest.mark.parametrize("size", [(37, 23), (224, 224), (500, 300)])
def test_dinov2_input_is_bilinear_resize_and_imagenet_normalisation(
    size: tuple[int, int],
) -> None:
    img = Image.fromarray(_noise_rgb(*size, seed=11))
    result = dinov2_input(img)
    assert result.shape == (3, 224, 224)
    assert result.dtype == np.float32
    # By hand, in float64: resize, /255, - mean, / std, HWC -> CHW.
    resized = np.asarray(img.resize((224, 224), Image.BILINEAR)) / 255.0
    mean = np.array([0.485, 0.456, 0.406])
    std = np.array([0.229, 0.224, 0.225])
    expected = ((resized - mean) / std).transpose(2, 0, 1)
    np.testing.assert_allclose(result, expected, rtol=0, atol=2e-6)


def test_dinov2_input_keeps_no_aspect_ratio() -> None:
    # Left half black, right half white in a wide image: after the 224x224 resize the
    # left columns are black and the right columns white (the whole image, stretched).
    pixels = np.zeros((50, 400, 3), dtype=np.uint8)
    pixels[:, 200:] = 255
    result = dinov2_input(Image.fromarray(pixels))
    black = (0.0 - 0.485) / 0.229
    white = (1.0 - 0.485) / 0.229
    np.testing.assert_allclose(result[0, :, :100], black, atol=1e-5)
    np.testing.assert_allclose(result[0, :, 124:], white, atol=1e-5)


# --- detector_input ----------------------------------------------------------------------


def _insightface_blob(bgr: np.ndarray, det_size: int = 640) -> tuple[np.ndarray, float]:
    """The letterbox of InsightFace's SCRFD._detect_candidates, then SCRFD's blobFromImage."""
    input_size = (det_size, det_size)
    im_ratio = float(bgr.shape[0]) / bgr.shape[1]
    model_ratio = float(input_size[1]) / input_size[0]
    if im_ratio > model_ratio:
        new_height = input_size[1]
        new_width = int(new_height / im_ratio)
    else:
        new_width = input_size[0]
        new_height = int(new_width * im_ratio)
    det_scale = float(new_height) / bgr.shape[0]
    det_img = np.zeros((input_size[1], input_size[0], 3), dtype=np.uint8)
    det_img[:new_height, :new_width, :] = cv2.resize(bgr, (new_width, new_height))
    blob = cv2.dnn.blobFromImage(det_img, 1.0 / 128, input_size, (127.5,) * 3, swapRB=True)
    return blob[0], det_scale


def test_detector_input_landscape_pads_the_bottom() -> None:
    # 320x240: im_ratio = 0.75 <= 1 -> new_width = 640, new_height = int(640 * 0.75) = 480,
    # scale = 480 / 240 = 2.0; rows 480..639 are padding.
    img = Image.fromarray(_noise_rgb(320, 240, seed=2))
    blob, scale = detector_input(img, 640)
    assert blob.shape == (3, 640, 640)
    assert blob.dtype == np.float32
    assert scale == 2.0
    np.testing.assert_array_equal(blob[:, 480:, :], np.float32(PAD_VALUE))
    assert not np.all(blob[:, 479, :] == np.float32(PAD_VALUE))


def test_detector_input_portrait_pads_the_right() -> None:
    # 240x320 (portrait): im_ratio = 4/3 > 1 -> new_height = 640,
    # new_width = int(640 / (4/3)) = 480, scale = 640 / 320 = 2.0; columns 480..639 are padding.
    img = Image.fromarray(_noise_rgb(240, 320, seed=3))
    blob, scale = detector_input(img, 640)
    assert blob.shape == (3, 640, 640)
    assert scale == 2.0
    np.testing.assert_array_equal(blob[:, :, 480:], np.float32(PAD_VALUE))
    assert not np.all(blob[:, :, 479] == np.float32(PAD_VALUE))


def test_detector_input_channels_are_rgb() -> None:
    # A pure red image: InsightFace feeds BGR to blobFromImage with swapRB=True, so the
    # blob's channel 0 is red: (255 - 127.5) / 128 = 0.99609375, the others (0 - 127.5) / 128.
    pixels = np.zeros((64, 64, 3), dtype=np.uint8)
    pixels[:, :, 0] = 255
    blob, scale = detector_input(Image.fromarray(pixels), 640)
    assert scale == 10.0
    np.testing.assert_array_equal(blob[0], np.float32((255 - 127.5) / 128))
    np.testing.assert_array_equal(blob[1:], np.float32(PAD_VALUE))


@pytest.mark.parametrize(
    ("size", "det_size"),
    [
        ((320, 240), 640),
        ((240, 320), 640),
        ((3000, 2400), 640),
        ((333, 517), 640),  # int() truncation of the letterbox size
        ((517, 333), 640),
        ((640, 640), 640),
        ((100, 100), 640),  # upscaled
        ((401, 299), 320),
    ],
)
def test_detector_input_equals_insightface_letterbox(size: tuple[int, int], det_size: int) -> None:
    img = Image.fromarray(_noise_rgb(*size, seed=size[0]))
    bgr = np.ascontiguousarray(np.asarray(img)[:, :, ::-1])  # what cv2.imread would give
    expected_blob, expected_scale = _insightface_blob(bgr, det_size)
    blob, scale = detector_input(img, det_size)
    assert blob.shape == (3, det_size, det_size)
    assert scale == expected_scale
    np.testing.assert_array_equal(blob, expected_blob)
