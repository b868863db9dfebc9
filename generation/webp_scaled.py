"""Decoding a large WebP straight to a reduced size, with libwebp's own scaling.

Pillow decodes every WebP through libwebp's animation decoder, which keeps two
full-size 4-byte canvases, hands the frame to Python as a full-size bytes copy and
Pillow then copies it once more into the image: a 25-megapixel photo peaks near four
times its 100 MB of pixels, even one at a time (bench/README.md). libwebp can instead
decode a still image directly at a smaller size (WebPDecoderOptions.use_scaling): a
lossy photo is decoded and averaged down row by row, so the full-size picture never
exists; a lossless one needs libwebp's one full-size 4-byte buffer, and nothing else.

Pillow's features do not reach that option, so the library Pillow already loaded is
called through ctypes. The structures below mirror libwebp's decode.h (decoder ABI
0x02xx, unchanged since libwebp 0.5). When the library cannot be found the caller
falls back to Pillow's whole decode.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
from pathlib import Path

from PIL import Image

# libwebp refuses a config whose ABI major version (the high byte) differs from its own.
DECODER_ABI_VERSION = 0x0209
MODE_RGB = 0
MODE_RGBA = 1
STATUS_OK = 0


class _BitstreamFeatures(ctypes.Structure):
    _fields_ = [
        ("width", ctypes.c_int),
        ("height", ctypes.c_int),
        ("has_alpha", ctypes.c_int),
        ("has_animation", ctypes.c_int),
        ("format", ctypes.c_int),
        ("pad", ctypes.c_uint32 * 5),
    ]


class _RGBABuffer(ctypes.Structure):
    _fields_ = [("rgba", ctypes.POINTER(ctypes.c_uint8)), ("stride", ctypes.c_int), ("size", ctypes.c_size_t)]


class _YUVABuffer(ctypes.Structure):
    _fields_ = [
        *((name, ctypes.POINTER(ctypes.c_uint8)) for name in ("y", "u", "v", "a")),
        *((name, ctypes.c_int) for name in ("y_stride", "u_stride", "v_stride", "a_stride")),
        *((name, ctypes.c_size_t) for name in ("y_size", "u_size", "v_size", "a_size")),
    ]


class _BufferUnion(ctypes.Union):
    _fields_ = [("RGBA", _RGBABuffer), ("YUVA", _YUVABuffer)]


class _DecBuffer(ctypes.Structure):
    _fields_ = [
        ("colorspace", ctypes.c_int),
        ("width", ctypes.c_int),
        ("height", ctypes.c_int),
        ("is_external_memory", ctypes.c_int),
        ("u", _BufferUnion),
        ("pad", ctypes.c_uint32 * 4),
        ("private_memory", ctypes.POINTER(ctypes.c_uint8)),
    ]


class _DecoderOptions(ctypes.Structure):
    _fields_ = [
        *(
            (name, ctypes.c_int)
            for name in (
                "bypass_filtering",
                "no_fancy_upsampling",
                "use_cropping",
                "crop_left",
                "crop_top",
                "crop_width",
                "crop_height",
                "use_scaling",
                "scaled_width",
                "scaled_height",
                "use_threads",
                "dithering_strength",
                "flip",
                "alpha_dithering_strength",
            )
        ),
        ("pad", ctypes.c_uint32 * 5),
    ]


class _DecoderConfig(ctypes.Structure):
    _fields_ = [("input", _BitstreamFeatures), ("output", _DecBuffer), ("options", _DecoderOptions)]


def _library_path() -> str | None:
    """The libwebp Pillow itself loaded (its wheels bundle one under a hashed name),
    else the system's."""
    from PIL import _webp  # noqa: F401  (loads libwebp into the process)

    maps = Path("/proc/self/maps")
    if maps.exists():
        for line in maps.read_text().splitlines():
            path = line.rsplit(" ", 1)[-1]
            name = Path(path).name
            if name.startswith(("libwebp-", "libwebp.so")) and Path(path).exists():
                return path
    return ctypes.util.find_library("webp")


@functools.cache
def _library() -> ctypes.CDLL | None:
    path = _library_path()
    if path is None:
        return None
    try:
        library = ctypes.CDLL(path)
    except OSError:
        return None
    library.WebPInitDecoderConfigInternal.argtypes = [ctypes.POINTER(_DecoderConfig), ctypes.c_int]
    library.WebPInitDecoderConfigInternal.restype = ctypes.c_int
    library.WebPGetFeaturesInternal.argtypes = [
        ctypes.c_char_p,
        ctypes.c_size_t,
        ctypes.POINTER(_BitstreamFeatures),
        ctypes.c_int,
    ]
    library.WebPGetFeaturesInternal.restype = ctypes.c_int
    library.WebPDecode.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.POINTER(_DecoderConfig)]
    library.WebPDecode.restype = ctypes.c_int
    library.WebPFreeDecBuffer.argtypes = [ctypes.POINTER(_DecBuffer)]
    library.WebPFreeDecBuffer.restype = None
    return library


def available() -> bool:
    return _library() is not None


def reduced_webp(data: bytes, *, factor: int) -> Image.Image | None:
    """The still WebP decoded at 1/`factor` of its size (RGB, or RGBA when it has alpha),
    or None when libwebp is not reachable or the file is animated.

    Raises OSError when libwebp cannot decode the file.
    """
    library = _library()
    if library is None:
        return None
    config = _DecoderConfig()
    if not library.WebPInitDecoderConfigInternal(ctypes.byref(config), DECODER_ABI_VERSION):
        return None
    if library.WebPGetFeaturesInternal(data, len(data), ctypes.byref(config.input), DECODER_ABI_VERSION) != STATUS_OK:
        raise OSError("WebP header could not be read")
    if config.input.has_animation:
        return None
    width, height = config.input.width, config.input.height
    mode = "RGBA" if config.input.has_alpha else "RGB"
    config.output.colorspace = MODE_RGBA if mode == "RGBA" else MODE_RGB
    config.options.use_scaling = 1
    scaled_width = config.options.scaled_width = max(1, -(-width // factor))  # rounded up, as Image.reduce does
    scaled_height = config.options.scaled_height = max(1, -(-height // factor))
    # libwebp writes into our buffer, which the image then reads (RGBA) or copies once
    # (RGB): no further copies of the decoded pixels.
    stride = scaled_width * len(mode)
    pixels = bytearray(stride * scaled_height)
    config.output.is_external_memory = 1
    config.output.u.RGBA.rgba = (ctypes.c_uint8 * len(pixels)).from_buffer(pixels)
    config.output.u.RGBA.stride = stride
    config.output.u.RGBA.size = len(pixels)
    status = library.WebPDecode(data, len(data), ctypes.byref(config))
    library.WebPFreeDecBuffer(ctypes.byref(config.output))  # frees libwebp's own, never ours
    if status != STATUS_OK:
        raise OSError(f"WebP decoding failed (libwebp status {status})")
    return Image.frombuffer(mode, (scaled_width, scaled_height), pixels, "raw", mode, stride, 1)
