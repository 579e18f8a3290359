"""What an uploaded image becomes: validated, upright, stripped bytes and a thumbnail.

The bytes are never trusted: the format is sniffed by Pillow, the pixel count is
bounded before any pixel is decoded, every frame is fully decoded (so truncation is
caught) and the result is re-encoded from pixels alone, so EXIF, GPS, XMP, comments
and trailing bytes do not survive. Pillow's errors are translated into Parley's
refusals here and go no further.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

from PIL import ExifTags, Image

from parley.errors import ParleyError, PayloadTooLarge, UnprocessableImage

MAX_IMAGE_BYTES = 1_048_576
MAX_IMAGE_PIXELS = 16_777_216
# An animation holds at most this many full-size images' worth of pixels.
ANIMATION_PIXEL_FACTOR = 1
# Each frame costs time to decode and encode however small it is.
MAX_FRAMES = 1000
THUMBNAIL_SIDE_PX = 320

JPEG_QUALITY = 90
WEBP_QUALITY = 90
THUMBNAIL_QUALITY = 85

CONTENT_TYPES = {
    "JPEG": "image/jpeg",
    "PNG": "image/png",
    "WEBP": "image/webp",
    "GIF": "image/gif",
}
_FORMATS = tuple(CONTENT_TYPES)

# Frame metadata that is part of the picture rather than about it.
_KEPT_INFO = ("transparency",)

# EXIF Orientation -> the transpose that turns the stored pixels upright (the table
# that ImageOps.exif_transpose uses).
_UPRIGHT = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


@dataclass(frozen=True, slots=True)
class ProcessedImage:
    """An accepted image as it is stored, with its thumbnail."""

    content: bytes
    content_type: str
    width: int
    height: int
    frames: int
    thumbnail: bytes
    thumbnail_content_type: str


@dataclass(slots=True)
class _Picture:
    """Decoded, upright frames and what is needed to encode them again."""

    format: str
    frames: list[Image.Image]
    durations: list[float]
    loop: int | None
    icc_profile: bytes | None


def process_image(
    data: bytes,
    *,
    max_bytes: int = MAX_IMAGE_BYTES,
    max_pixels: int = MAX_IMAGE_PIXELS,
) -> ProcessedImage:
    """Check an uploaded image and return what to store, or refuse it.

    Raises PayloadTooLarge (image_too_large) or UnprocessableImage
    (image_unreadable, image_too_many_pixels). Whatever the bytes, nothing else
    escapes but MemoryError, which is the server's trouble rather than the client's.
    """
    if len(data) > max_bytes:
        raise PayloadTooLarge(
            "image_too_large",
            f"The image is {len(data):,} bytes; the limit is {max_bytes:,} bytes.",
        )

    try:
        picture = _decode(data, max_pixels)
        return _encode(picture)
    except (ParleyError, MemoryError):
        raise
    # Pillow's bomb warning is raised only when warnings are errors; otherwise it
    # is merely logged, and our own limit, far lower, refuses the image.
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise _too_many_pixels(max_pixels) from exc
    # Hostile bytes make Pillow raise many types (OSError, ValueError, SyntaxError,
    # struct.error, EOFError, IndexError, ...); no detail of theirs reaches a client.
    except Exception as exc:
        raise UnprocessableImage(
            "image_unreadable",
            "The file is not a readable JPEG, PNG, WebP or GIF image.",
        ) from exc


def _decode(data: bytes, max_pixels: int) -> _Picture:
    with Image.open(io.BytesIO(data), formats=_FORMATS) as image:
        # Pillow reports a JPEG with extra images (stereo pairs, gain maps) as MPO;
        # the first image is the photograph.
        image_format = "JPEG" if image.format == "MPO" else image.format
        frame_count = 1 if image.format == "MPO" else getattr(image, "n_frames", 1)
        _check_pixels(image.size, frame_count, max_pixels)

        frames, durations = _decode_frames(image, frame_count, max_pixels)
        return _Picture(
            format=image_format,
            frames=frames,
            durations=durations,
            loop=image.info.get("loop"),
            icc_profile=image.info.get("icc_profile"),
        )


def _check_pixels(size: tuple[int, int], frames: int, max_pixels: int) -> None:
    width, height = size
    if width * height > max_pixels:
        raise UnprocessableImage(
            "image_too_many_pixels",
            f"The image is {width}x{height}, {width * height:,} pixels; "
            f"the limit is {max_pixels:,}.",
        )

    if frames > MAX_FRAMES:
        raise UnprocessableImage(
            "image_too_many_pixels",
            f"The animation has {frames:,} frames; the limit is {MAX_FRAMES:,}.",
        )

    budget = ANIMATION_PIXEL_FACTOR * max_pixels
    if frames * width * height > budget:
        raise UnprocessableImage(
            "image_too_many_pixels",
            f"The animation has {frames:,} frames of {width}x{height}, "
            f"{frames * width * height:,} pixels in all; the limit is {budget:,}.",
        )


def _too_many_pixels(max_pixels: int) -> UnprocessableImage:
    return UnprocessableImage(
        "image_too_many_pixels",
        f"The image has too many pixels; the limit is {max_pixels:,}.",
    )


def _decode_frames(
    image: Image.Image, frame_count: int, max_pixels: int
) -> tuple[list[Image.Image], list[float]]:
    frames: list[Image.Image] = []
    durations: list[float] = []
    for index in range(frame_count):
        image.seek(index)
        # A GIF frame may grow the canvas when seeked to; check before decoding it,
        # counting every frame so far at the current (largest) size.
        _check_pixels(image.size, index + 1, max_pixels)

        frame = image.copy()
        durations.append(frame.info.get("duration", 0))
        frames.append(_bare(_upright(frame)))
    return frames, durations


def _upright(frame: Image.Image) -> Image.Image:
    method = _UPRIGHT.get(_orientation(frame))
    return frame if method is None else frame.transpose(method)


def _orientation(frame: Image.Image) -> object:
    # ImageOps.exif_transpose also rewrites the EXIF, and refuses EXIF it cannot
    # parse; the EXIF is dropped here anyway, so a damaged one only loses its say.
    try:
        return frame.getexif().get(ExifTags.Base.Orientation)
    except Exception:
        return None


def _bare(frame: Image.Image) -> Image.Image:
    # Savers read comments, loop counts and more from info: keep pixels alone.
    frame.info = {key: frame.info[key] for key in _KEPT_INFO if key in frame.info}
    return frame


def _encode(picture: _Picture) -> ProcessedImage:
    first, *rest = _encodable_frames(picture)

    out = io.BytesIO()
    first.save(out, format=picture.format, **_save_options(picture, first, rest))

    return ProcessedImage(
        content=out.getvalue(),
        content_type=CONTENT_TYPES[picture.format],
        width=first.width,
        height=first.height,
        frames=1 + len(rest),
        thumbnail=_thumbnail(first),
        thumbnail_content_type="image/jpeg",
    )


def _encodable_frames(picture: _Picture) -> list[Image.Image]:
    frames = picture.frames
    if picture.format == "JPEG" and frames[0].mode not in ("L", "RGB", "CMYK"):
        return [frames[0].convert("RGB")]

    # Pillow's GIF writer keeps transparent pixels transparent across frames only
    # when every frame is RGBA (a paletted first frame can lose them).
    if picture.format == "GIF" and len(frames) > 1 and any(map(_has_alpha, frames)):
        return [frame.convert("RGBA") for frame in frames]
    return frames


def _has_alpha(image: Image.Image) -> bool:
    return image.mode in ("LA", "PA", "RGBA") or "transparency" in image.info


def _save_options(
    picture: _Picture, first: Image.Image, rest: list[Image.Image]
) -> dict[str, Any]:
    options: dict[str, Any] = {}
    if picture.icc_profile and picture.format != "GIF":
        options["icc_profile"] = picture.icc_profile
    if picture.format == "JPEG":
        options["quality"] = JPEG_QUALITY
    if picture.format == "WEBP":
        options["quality"] = WEBP_QUALITY
    if not rest:
        return options

    options.update(save_all=True, append_images=rest, duration=picture.durations)
    if picture.loop is not None:
        options["loop"] = picture.loop
    # The frames are whole pictures, already composited: a transparent pixel must
    # show the background, not the frame before it.
    if picture.format == "GIF" and first.mode == "RGBA":
        options["disposal"] = 2
    return options


def _thumbnail(image: Image.Image) -> bytes:
    # Palette indices cannot be resampled smoothly, nor can one transparent colour.
    if image.mode in ("1", "P") or "transparency" in image.info:
        image = image.convert("RGBA")

    scale = min(1.0, THUMBNAIL_SIDE_PX / max(image.size))
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    small = image.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)

    out = io.BytesIO()
    _on_white(small).save(out, format="JPEG", quality=THUMBNAIL_QUALITY)
    return out.getvalue()


def _on_white(image: Image.Image) -> Image.Image:
    rgba = image.convert("RGBA")
    white = Image.new("RGBA", rgba.size, "white")
    return Image.alpha_composite(white, rgba).convert("RGB")
