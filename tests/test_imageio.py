"""pipeline.imageio: every pixel mode Pillow opens is read as scaled 8-bit RGB or a [0, 1]
matte; bad files are a PipelineError naming the file. The expected values are computed here
from the arrays written, never by the code under test."""

from __future__ import annotations

import struct
import warnings
import zlib

import numpy as np
import pytest
from PIL import Image

from pipeline.errors import PipelineError
from pipeline.imageio import read_gray, read_matte, read_rgb

H, W = 4, 5
N = H * W
GREY8 = (np.arange(N, dtype=np.uint8) * 13).reshape(H, W)  # 0 .. 247
GREY16 = np.array([round(i * 65535 / (N - 1)) for i in range(N)], np.uint16).reshape(H, W)
RGB8 = np.stack([GREY8, 255 - GREY8, (np.arange(N) * 7 % 256).reshape(H, W)], -1).astype(
    np.uint8)
RGB16 = np.stack([GREY16, 65535 - GREY16, GREY16 // 3], -1).astype(np.uint16)


def _to8(values16: np.ndarray) -> np.ndarray:
    """``round(v * 255 / 65535)`` in integer arithmetic."""
    return ((values16.astype(np.int64) * 255 + 32767) // 65535).astype(np.uint8)


def _grey_rgb(grey: np.ndarray) -> np.ndarray:
    return np.repeat(grey[..., None], 3, axis=2)


def _check(actual: np.ndarray, expected: np.ndarray) -> None:
    assert actual.shape == (*expected.shape[:2], 3) and actual.dtype == np.uint8
    np.testing.assert_allclose(actual.astype(int), expected.astype(int), atol=1)


def _save(image: Image.Image, path, mode: str):
    """Save and check that Pillow reopens the file in ``mode`` (else the test tests nothing)."""
    image.save(path)
    with Image.open(path) as reopened:
        assert reopened.mode == mode, f"{path.name} reopens as {reopened.mode}, not {mode}"
    return path


def _png16(path, array: np.ndarray, color_type: int):
    """A 16-bit PNG written by hand (numpy + zlib): colour type 0 grey, 2 RGB, 4 grey+alpha,
    6 RGBA."""
    height, width = array.shape[:2]
    raw = b"".join(b"\0" + array[y].astype(">u2").tobytes() for y in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    header = struct.pack(">IIBBBBB", width, height, 16, color_type, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
                     + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))
    return path


# --- read_rgb, one mode at a time ---------------------------------------------------------

def test_mode_1(tmp_path):
    bits = (np.arange(N).reshape(H, W) % 3) == 0
    path = _save(Image.fromarray(bits), tmp_path / "a.png", "1")
    _check(read_rgb(path), _grey_rgb(bits.astype(np.uint8) * 255))


def test_mode_L(tmp_path):
    path = _save(Image.fromarray(GREY8), tmp_path / "a.png", "L")
    _check(read_rgb(path), _grey_rgb(GREY8))


def test_mode_LA_drops_alpha(tmp_path):
    alpha = np.zeros_like(GREY8)  # fully transparent: the colour must survive anyway
    path = _save(Image.fromarray(np.stack([GREY8, alpha], -1)), tmp_path / "a.png", "LA")
    _check(read_rgb(path), _grey_rgb(GREY8))


def test_16_bit_grey_png_is_scaled_not_white(tmp_path):
    """Issue 28: an I;16 photo came out 99.99 % white (convert("RGB") clips at 255)."""
    path = _save(Image.fromarray(GREY16), tmp_path / "a.png", "I;16")
    rgb = read_rgb(path)
    _check(rgb, _grey_rgb(_to8(GREY16)))
    assert rgb.min() == 0 and rgb.max() == 255
    assert (rgb == 255).mean() < 0.1
    assert abs(float(rgb.mean()) - 127.5) < 2


@pytest.mark.parametrize("rawmode, opens_as", [("I;16B", "I;16B"), ("I;16L", "I;16"),
                                                ("I;16", "I;16")])
def test_16_bit_grey_tiff_of_either_byte_order(tmp_path, rawmode, opens_as):
    dtype = ">u2" if rawmode.endswith("B") else "<u2"
    image = Image.frombytes(rawmode, (W, H), GREY16.astype(dtype).tobytes())
    path = _save(image, tmp_path / "a.tif", opens_as)
    _check(read_rgb(path), _grey_rgb(_to8(GREY16)))


def test_16_bit_grey_png_written_by_hand(tmp_path):
    _check(read_rgb(_png16(tmp_path / "a.png", GREY16, 0)), _grey_rgb(_to8(GREY16)))


def test_mode_I_within_16_bits(tmp_path):
    path = _save(Image.fromarray(GREY16.astype(np.int32)), tmp_path / "a.tif", "I")
    _check(read_rgb(path), _grey_rgb(_to8(GREY16)))


@pytest.mark.parametrize("factor", [100, -1])
def test_mode_I_outside_16_bits_is_refused(tmp_path, factor):
    values = GREY16.astype(np.int32) * factor
    path = _save(Image.fromarray(values), tmp_path / "wide.tif", "I")
    with pytest.raises(PipelineError, match=r"wide\.tif.*mode I.*values in \[") as info:
        read_rgb(path)
    assert f"{values.min()}" in str(info.value) and f"{values.max()}" in str(info.value)


def test_mode_F_in_unit_range(tmp_path):
    unit = (GREY16 / 65535).astype(np.float32)
    path = _save(Image.fromarray(unit), tmp_path / "a.tif", "F")
    expected = np.floor(unit.astype(np.float64) * 255 + 0.5)
    _check(read_rgb(path), _grey_rgb(expected))


@pytest.mark.parametrize("bad", [1.5, -0.25, float("nan")])
def test_mode_F_outside_unit_range_is_refused(tmp_path, bad):
    values = (GREY16 / 65535).astype(np.float32)
    values[1, 2] = bad
    path = _save(Image.fromarray(values), tmp_path / "depth.tif", "F")
    with pytest.raises(PipelineError, match=r"depth\.tif.*mode F.*\[0, 1\]"):
        read_rgb(path)
    with pytest.raises(PipelineError, match=r"depth\.tif"):
        read_matte(path)


PALETTE = np.array([[0, 0, 0], [255, 0, 0], [0, 200, 30], [12, 34, 56]], np.uint8)
INDEX = (np.arange(N) % 4).astype(np.uint8).reshape(H, W)


def _palette_image(transparency) -> Image.Image:
    image = Image.frombytes("P", (W, H), INDEX.tobytes())
    image.putpalette(PALETTE.ravel().tolist())
    if transparency is not None:
        image.info["transparency"] = transparency
    return image


@pytest.mark.parametrize("transparency", [None, 2, bytes([255, 128, 0, 255])],
                         ids=["opaque", "one-index", "per-entry"])
def test_mode_P(tmp_path, transparency):
    path = _save(_palette_image(transparency), tmp_path / "a.png", "P")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # Pillow warns on P with bytes transparency -> RGB
        rgb = read_rgb(path)
    _check(rgb, PALETTE[INDEX])


def test_mode_RGB(tmp_path):
    path = _save(Image.fromarray(RGB8), tmp_path / "a.png", "RGB")
    _check(read_rgb(path), RGB8)


def test_mode_RGBA_drops_alpha(tmp_path):
    alpha = (np.arange(N) % 2 * 255).astype(np.uint8).reshape(H, W, 1)
    path = _save(Image.fromarray(np.concatenate([RGB8, alpha], -1)), tmp_path / "a.png", "RGBA")
    _check(read_rgb(path), RGB8)


def test_mode_CMYK(tmp_path):
    cmyk = np.stack([GREY8, 255 - GREY8, GREY8 // 2, (np.arange(N) * 5).reshape(H, W)],
                    -1).astype(np.uint8)
    path = _save(Image.frombytes("CMYK", (W, H), cmyk.tobytes()), tmp_path / "a.tif", "CMYK")
    c = cmyk.astype(np.float64)
    expected = (255 - c[..., :3]) * (255 - c[..., 3:]) / 255  # Pillow's naive CMYK -> RGB
    _check(read_rgb(path), np.rint(expected))


@pytest.mark.parametrize("color_type, channels", [(2, 3), (6, 4)], ids=["RGB", "RGBA"])
def test_16_bit_colour_png_written_by_hand(tmp_path, color_type, channels):
    """Pillow opens these as 8-bit RGB/RGBA, keeping each sample's high byte."""
    alpha = np.full((H, W, 1), 1000, np.uint16)
    array = np.concatenate([RGB16, alpha], -1)[..., :channels]
    path = _png16(tmp_path / "a.png", array, color_type)
    _check(read_rgb(path), _to8(RGB16))


def test_16_bit_grey_alpha_png_written_by_hand(tmp_path):
    path = _png16(tmp_path / "a.png", np.stack([GREY16, 65535 - GREY16], -1), 4)
    _check(read_rgb(path), _grey_rgb(_to8(GREY16)))


@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_16_bit_colour_written_by_opencv(tmp_path, suffix):
    cv2 = pytest.importorskip("cv2")
    path = tmp_path / f"rgb{suffix}"
    assert cv2.imwrite(str(path), RGB16[..., ::-1].copy())  # OpenCV writes BGR
    assert cv2.imread(str(path), cv2.IMREAD_UNCHANGED).dtype == np.uint16
    _check(read_rgb(path), _to8(RGB16))
    rgba = tmp_path / f"rgba{suffix}"
    assert cv2.imwrite(str(rgba), np.concatenate([RGB16[..., ::-1], GREY16[..., None]], -1))
    _check(read_rgb(rgba), _to8(RGB16))


# --- read_matte and read_gray ----------------------------------------------------------------

def _check_matte(actual: np.ndarray, expected: np.ndarray, atol: float = 1e-6) -> None:
    assert actual.shape == expected.shape and actual.dtype == np.float32
    np.testing.assert_allclose(actual, expected, atol=atol)


def test_matte_of_mode_1(tmp_path):
    bits = (np.arange(N).reshape(H, W) % 3) == 0
    _check_matte(read_matte(_save(Image.fromarray(bits), tmp_path / "m.png", "1")),
                 bits.astype(np.float64))


def test_matte_of_mode_L_and_LA(tmp_path):
    _check_matte(read_matte(_save(Image.fromarray(GREY8), tmp_path / "m.png", "L")),
                 GREY8 / 255)
    la = Image.fromarray(np.stack([GREY8, 255 - GREY8], -1))
    _check_matte(read_matte(_save(la, tmp_path / "la.png", "LA")), GREY8 / 255)


def test_matte_of_16_bit_grey(tmp_path):
    path = _save(Image.fromarray(GREY16), tmp_path / "m.png", "I;16")
    matte = read_matte(path)
    _check_matte(matte, GREY16 / 65535)
    assert matte.min() == 0 and matte.max() == 1


def test_matte_of_mode_F(tmp_path):
    unit = (GREY16 / 65535).astype(np.float32)
    _check_matte(read_matte(_save(Image.fromarray(unit), tmp_path / "m.tif", "F")),
                 unit.astype(np.float64))


def test_matte_of_RGB_is_its_luma(tmp_path):
    path = _save(Image.fromarray(RGB8), tmp_path / "m.png", "RGB")
    luma = RGB8.astype(np.float64) @ np.array([0.299, 0.587, 0.114])
    _check_matte(read_matte(path), luma / 255, atol=1 / 255)


def test_read_gray_keeps_the_stored_dtype(tmp_path):
    eight = read_gray(_save(Image.fromarray(GREY8), tmp_path / "8.png", "L"))
    assert eight.dtype == np.uint8
    np.testing.assert_array_equal(eight, GREY8)
    sixteen = read_gray(_save(Image.fromarray(GREY16), tmp_path / "16.png", "I;16"))
    assert sixteen.dtype == np.uint16
    np.testing.assert_array_equal(sixteen, GREY16)


# --- bad files -------------------------------------------------------------------------------

@pytest.mark.parametrize("reader", [read_rgb, read_matte, read_gray])
def test_truncated_png_names_the_file(tmp_path, reader):
    noise = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    whole = tmp_path / "whole.png"
    Image.fromarray(noise).save(whole)
    data = whole.read_bytes()
    cut = tmp_path / "cut.png"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(PipelineError, match=r"cut\.png.*truncated"):
        reader(cut)


@pytest.mark.parametrize("reader", [read_rgb, read_matte, read_gray])
def test_non_image_and_missing_file_name_the_file(tmp_path, reader):
    text = tmp_path / "notes.png"
    text.write_text("not a picture\n")
    with pytest.raises(PipelineError, match=r"notes\.png"):
        reader(text)
    with pytest.raises(PipelineError, match=r"absent\.png"):
        reader(tmp_path / "absent.png")
