"""Tests for the image pipeline: what is accepted, how it is stored, what is refused."""

from __future__ import annotations

import contextlib
import io
import struct
import subprocess
import sys
import time
import zlib
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from PIL import Image, ImageChops, ImageFile, ImageSequence, ImageStat, PngImagePlugin

from parley.errors import ParleyError, PayloadTooLarge, UnprocessableImage
from parley.media.images import (
    MAX_FRAMES,
    THUMBNAIL_SIDE_PX,
    ProcessedImage,
    process_image,
)

ROOT = Path(__file__).resolve().parents[2]
IMAGES = ROOT / "tests" / "data" / "images"
MIB = 1_048_576

# file -> (content type, width, height, frames) of the stored image
ACCEPTED = {
    "astronaut.png": ("image/png", 512, 512, 1),
    "chelsea.png": ("image/png", 451, 300, 1),
    "coffee.png": ("image/png", 600, 400, 1),
    "rocket.jpg": ("image/jpeg", 640, 427, 1),
    "coffee.webp": ("image/webp", 600, 400, 1),
    "chelsea_animated.gif": ("image/gif", 160, 120, 4),
    "rocket_exif_gps_orient6.jpg": ("image/jpeg", 427, 640, 1),
    "coffee_exactly_1MiB.jpg": ("image/jpeg", 1200, 800, 1),
}
UNREADABLE = ["truncated.jpg", "not_an_image.jpg"]


def read(name: str) -> bytes:
    return (IMAGES / name).read_bytes()


def open_image(name: str) -> Image.Image:
    return Image.open(io.BytesIO(read(name)))


def encode(image: Image.Image, image_format: str, **options: object) -> bytes:
    out = io.BytesIO()
    image.save(out, format=image_format, **options)
    return out.getvalue()


def refusal(data: bytes, **limits: int) -> ParleyError:
    with pytest.raises(ParleyError) as caught:
        process_image(data, **limits)
    return caught.value


def rgba_frames(data: bytes) -> list[tuple[Image.Image, object]]:
    image = Image.open(io.BytesIO(data))
    frames = []
    for frame in ImageSequence.Iterator(image):
        frame.load()
        frames.append((frame.convert("RGBA"), frame.info.get("duration")))
    return frames


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that declares its size but holds almost no pixel data."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body)
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\0" * 8))
        + chunk(b"IEND", b"")
    )


def gif_of_frames(screen: tuple[int, int], frames: list[tuple[int, int]]) -> bytes:
    """A GIF whose frames each declare a size but hold a single pixel's data."""
    black_and_white = b"\0\0\0\xff\xff\xff"
    data = b"GIF89a" + struct.pack("<HHBBB", *screen, 0x80, 0, 0) + black_and_white
    for width, height in frames:
        descriptor = struct.pack("<HHHHB", 0, 0, width, height, 0)
        data += b"\x2c" + descriptor + b"\x02\x02\x44\x01\x00"
    return data + b"\x3b"


@pytest.fixture(scope="module")
def small_photo() -> Image.Image:
    return open_image("rocket.jpg").convert("RGB").resize((64, 48))


@pytest.fixture(scope="module")
def processed() -> dict[str, ProcessedImage]:
    return {name: process_image(read(name)) for name in ACCEPTED}


# --- the test photographs ---------------------------------------------------------


@pytest.mark.parametrize("name", ACCEPTED)
def test_each_accepted_photo_is_stored_in_its_own_format_and_size(
    name: str, processed: dict[str, ProcessedImage]
) -> None:
    """Every photo the README accepts comes back with its type, size and frames."""
    content_type, width, height, frames = ACCEPTED[name]
    result = processed[name]

    assert (result.content_type, result.width, result.height, result.frames) == (
        content_type,
        width,
        height,
        frames,
    )
    stored = Image.open(io.BytesIO(result.content))
    assert Image.MIME[stored.format] == content_type
    assert stored.size == (width, height)
    assert getattr(stored, "n_frames", 1) == frames


@pytest.mark.parametrize("name", ACCEPTED)
def test_each_thumbnail_is_an_rgb_jpeg_no_longer_than_320_px(
    name: str, processed: dict[str, ProcessedImage]
) -> None:
    """Thumbnails are RGB JPEGs, longest side at most 320, of the same shape."""
    result = processed[name]
    thumbnail = Image.open(io.BytesIO(result.thumbnail))

    assert result.thumbnail_content_type == "image/jpeg"
    assert thumbnail.format == "JPEG"
    assert thumbnail.mode == "RGB"
    longest = max(result.width, result.height)
    assert max(thumbnail.size) == min(THUMBNAIL_SIDE_PX, longest)
    assert (thumbnail.width > thumbnail.height) == (result.width > result.height)


@pytest.mark.parametrize("name", ACCEPTED)
def test_each_stored_image_carries_no_exif_xmp_comment_or_text(
    name: str, processed: dict[str, ProcessedImage]
) -> None:
    """The stored bytes hold pixels, colour profile and animation timing, no more."""
    stored = Image.open(io.BytesIO(processed[name].content))

    assert not stored.getexif()
    assert not {"exif", "xmp", "XML:com.adobe.xmp", "comment", "Comment"} & set(
        stored.info
    )
    if stored.format == "JPEG":
        assert {marker for marker, _ in stored.applist} <= {"APP0", "APP2", "APP14"}
    if stored.format == "PNG":
        assert not stored.text


def test_the_rotated_photo_is_stored_upright_without_any_exif_or_gps() -> None:
    """EXIF orientation 6 is applied to the pixels, then all EXIF and GPS are gone."""
    original = open_image("rocket_exif_gps_orient6.jpg")
    assert original.getexif().get_ifd(0x8825)  # the file does carry a GPS position

    result = process_image(read("rocket_exif_gps_orient6.jpg"))
    stored = Image.open(io.BytesIO(result.content))

    assert result.height > result.width
    assert stored.size == (427, 640)
    assert not stored.getexif()
    assert not stored.getexif().get_ifd(0x8825)
    assert "exif" not in stored.info
    assert b"Exif" not in result.content
    assert b"ExampleCam" not in result.content


def test_the_rotated_photo_is_turned_clockwise_like_a_viewer_would() -> None:
    """The stored pixels match the same photo turned a quarter turn clockwise."""
    upright = open_image("rocket.jpg").transpose(Image.Transpose.ROTATE_270)

    result = process_image(read("rocket_exif_gps_orient6.jpg"))
    stored = Image.open(io.BytesIO(result.content)).convert("RGB")

    difference = ImageStat.Stat(ImageChops.difference(upright.convert("RGB"), stored))
    assert max(difference.mean) < 10


@pytest.mark.parametrize("name", ["astronaut.png", "chelsea.png", "rocket.jpg"])
def test_the_colour_profile_is_kept(name: str) -> None:
    """An embedded ICC profile survives, so colours look the same after storing."""
    profile = open_image(name).info["icc_profile"]

    stored = Image.open(io.BytesIO(process_image(read(name)).content))

    assert stored.info.get("icc_profile") == profile


def test_the_animated_gif_keeps_its_four_frames_timing_and_loop() -> None:
    """All four frames are kept pixel for pixel, with their durations and the loop."""
    data = read("chelsea_animated.gif")

    result = process_image(data)

    assert result.frames == 4
    before, after = rgba_frames(data), rgba_frames(result.content)
    assert len(after) == 4
    for (old, old_duration), (new, new_duration) in zip(before, after, strict=True):
        assert ImageChops.difference(old, new).getbbox() is None
        assert new_duration == old_duration
    assert Image.open(io.BytesIO(result.content)).info.get("loop") == 0


def test_the_thumbnail_of_an_animation_is_its_first_frame() -> None:
    """An animated GIF's thumbnail shows the first frame, not a later one."""
    first = open_image("chelsea_animated.gif").convert("RGB")

    result = process_image(read("chelsea_animated.gif"))
    thumbnail = Image.open(io.BytesIO(result.thumbnail))

    assert thumbnail.size == first.size
    difference = ImageStat.Stat(ImageChops.difference(first, thumbnail.convert("RGB")))
    assert max(difference.mean) < 6


# --- the size limit ---------------------------------------------------------------


def test_a_file_of_exactly_one_mebibyte_is_accepted() -> None:
    """1,048,576 bytes is at the limit, not over it."""
    data = read("coffee_exactly_1MiB.jpg")
    assert len(data) == MIB

    assert process_image(data).content_type == "image/jpeg"


def test_a_file_one_byte_over_a_mebibyte_is_refused_as_too_large() -> None:
    """1,048,577 bytes is refused with image_too_large, naming the size and limit."""
    data = read("coffee_1MiB_plus_1.jpg")
    assert len(data) == MIB + 1

    error = refusal(data)

    assert isinstance(error, PayloadTooLarge)
    assert error.code == "image_too_large"
    assert error.status == 413
    assert "1,048,577" in error.message
    assert "1,048,576" in error.message


def test_the_size_limit_is_checked_before_the_bytes_are_looked_at() -> None:
    """An oversized upload is refused for its size even when it is not an image."""
    error = refusal(b"x" * 11, max_bytes=10)

    assert error.code == "image_too_large"


# --- refusals of what cannot be read ----------------------------------------------


@pytest.mark.parametrize("name", UNREADABLE)
def test_truncated_files_and_non_images_are_refused_as_unreadable(name: str) -> None:
    """A JPEG cut in half and a PDF named .jpg are both image_unreadable."""
    error = refusal(read(name))

    assert isinstance(error, UnprocessableImage)
    assert error.code == "image_unreadable"
    assert error.status == 422


@pytest.mark.parametrize(
    "make",
    [
        lambda photo: b"",
        lambda photo: b"GIF89a",
        lambda photo: encode(photo, "BMP"),
        lambda photo: encode(photo, "TIFF"),
        lambda photo: encode(photo, "PNG")[:-40],
        lambda photo: encode(photo, "WEBP")[:-40],
        lambda photo: encode(photo.convert("P"), "GIF")[:-40],
    ],
    ids=["empty", "gif-magic-only", "bmp", "tiff", "png-cut", "webp-cut", "gif-cut"],
)
def test_other_formats_and_cut_files_are_refused_as_unreadable(
    make: Callable[[Image.Image], bytes], small_photo: Image.Image
) -> None:
    """Formats Pillow reads but Parley does not take, and cut files, are unreadable."""
    error = refusal(make(small_photo))

    assert error.code == "image_unreadable"


def test_a_refusal_message_gives_no_detail_of_the_image_library() -> None:
    """Messages are Parley's own sentences; Pillow's text stays out of them."""
    errors = [
        refusal(read(name))
        for name in [*UNREADABLE, "bomb_30000x30000.png", "coffee_1MiB_plus_1.jpg"]
    ]

    for error in errors:
        assert error.message.endswith(".")
        for leak in ("PIL", "Pillow", "decompression", "BytesIO", "truncated", "TIFF"):
            assert leak.lower() not in error.message.lower()


# --- refusals of too many pixels --------------------------------------------------


def test_the_pixel_bomb_is_refused_as_too_many_pixels() -> None:
    """The 30000x30000 PNG, under 1 MB, is refused with image_too_many_pixels."""
    started = time.perf_counter()

    error = refusal(read("bomb_30000x30000.png"))

    assert isinstance(error, UnprocessableImage)
    assert error.code == "image_too_many_pixels"
    assert time.perf_counter() - started < 1.0


def test_the_pixel_bomb_is_refused_quickly_and_without_decoding_it() -> None:
    """In a fresh process the refusal takes well under a second and a few MB."""
    script = (
        "import resource, sys, time\n"
        "from parley.errors import ParleyError\n"
        "from parley.media.images import process_image\n"
        "data = open(sys.argv[1], 'rb').read()\n"
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "started = time.perf_counter()\n"
        "try:\n"
        "    process_image(data)\n"
        "except ParleyError as error:\n"
        "    print(error.code)\n"
        "print(time.perf_counter() - started)\n"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before)\n"
    )
    bomb = str(IMAGES / "bomb_30000x30000.png")

    run = subprocess.run(
        [sys.executable, "-c", script, bomb],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )

    code, seconds, grown_kib = run.stdout.split()
    assert code == "image_too_many_pixels"
    assert float(seconds) < 0.5
    assert int(grown_kib) < 50 * 1024  # decoding it would take 900 MB


def test_the_pixel_limit_is_inclusive() -> None:
    """Exactly max_pixels passes the pixel check; one more pixel is refused."""
    at_limit = refusal(png_header_only(100, 100), max_pixels=10_000)
    over_limit = refusal(png_header_only(100, 100), max_pixels=9_999)

    # The header-only PNG holds no real pixels, so passing the check means failing
    # to decode.
    assert at_limit.code == "image_unreadable"
    assert over_limit.code == "image_too_many_pixels"
    assert "10,000" in over_limit.message
    assert "9,999" in over_limit.message


def test_the_default_pixel_limit_is_36_million() -> None:
    """A 6001x6000 header is refused at once under the default limit."""
    error = refusal(png_header_only(6001, 6000))

    assert error.code == "image_too_many_pixels"


@pytest.mark.filterwarnings("error::PIL.Image.DecompressionBombWarning")
def test_pillows_bomb_warning_is_translated_when_warnings_are_errors() -> None:
    """With warnings as errors, Pillow's own bomb warning becomes our refusal."""
    error = refusal(png_header_only(10_000, 10_000))

    assert error.code == "image_too_many_pixels"
    assert "Pillow" not in error.message


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_a_hundred_megapixel_header_is_refused_as_too_many_pixels() -> None:
    """Between Pillow's warning and error limits, our own check refuses the image."""
    error = refusal(png_header_only(10_000, 10_000))

    assert error.code == "image_too_many_pixels"


def test_a_gif_frame_that_grows_the_canvas_is_refused_before_decoding() -> None:
    """A 1x1 GIF whose second frame declares 8000x8000 is refused for its pixels."""
    data = gif_of_frames((1, 1), [(1, 1), (8000, 8000)])

    error = refusal(data)

    assert error.code == "image_too_many_pixels"
    assert "8000x8000" in error.message


def test_an_animation_over_one_images_worth_of_pixels_is_refused() -> None:
    """Frames times width times height may not pass max_pixels: an animation
    costs the memory of one image of the largest size, not more."""
    four = gif_of_frames((8, 8), [(1, 1)] * 4)
    five = gif_of_frames((8, 8), [(1, 1)] * 5)

    assert process_image(four, max_pixels=256).frames == 4
    assert refusal(five, max_pixels=256).code == "image_too_many_pixels"


def test_an_animation_of_too_many_frames_is_refused() -> None:
    """Even tiny frames are limited in number, since each costs time to re-encode."""
    at_limit = gif_of_frames((1, 1), [(1, 1)] * MAX_FRAMES)
    over_limit = gif_of_frames((1, 1), [(1, 1)] * (MAX_FRAMES + 1))

    assert process_image(at_limit).frames == MAX_FRAMES
    assert refusal(over_limit).code == "image_too_many_pixels"


def test_pillows_global_settings_are_left_alone() -> None:
    """The pipeline never changes Pillow's process-wide limits."""
    limit_before = Image.MAX_IMAGE_PIXELS

    for name in ["bomb_30000x30000.png", "truncated.jpg", "rocket.jpg"]:
        with contextlib.suppress(ParleyError):
            process_image(read(name))

    assert limit_before == Image.MAX_IMAGE_PIXELS
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


# --- other kinds of image ---------------------------------------------------------


@pytest.mark.parametrize("mode", ["1", "L", "LA", "P", "RGB", "RGBA", "I;16"])
def test_every_png_pixel_mode_is_stored_as_is_and_thumbnailed(
    mode: str, small_photo: Image.Image
) -> None:
    """Bilevel, grey, grey+alpha, palette, RGB, RGBA and 16-bit PNGs all work."""
    source = small_photo.convert("L").convert(mode) if mode == "I;16" else small_photo
    data = encode(source.convert(mode), "PNG")

    result = process_image(data)

    assert Image.open(io.BytesIO(result.content)).mode == mode
    assert Image.open(io.BytesIO(result.thumbnail)).mode == "RGB"


@pytest.mark.parametrize("mode", ["L", "RGB", "CMYK"])
def test_every_jpeg_colour_space_is_kept(mode: str, small_photo: Image.Image) -> None:
    """Grey, RGB and CMYK JPEGs keep their colour space."""
    result = process_image(encode(small_photo.convert(mode), "JPEG"))

    assert Image.open(io.BytesIO(result.content)).mode == mode


def test_png_text_exif_and_xmp_chunks_are_dropped(small_photo: Image.Image) -> None:
    """tEXt, iTXt (XMP) and eXIf chunks do not reach the stored PNG."""
    text = PngImagePlugin.PngInfo()
    text.add_text("Author", "Someone Private")
    text.add_itxt("XML:com.adobe.xmp", "<x:xmpmeta>secret</x:xmpmeta>")
    exif = Image.Exif()
    exif[0x010F] = "PrivateCam"
    data = encode(small_photo, "PNG", pnginfo=text, exif=exif)

    content = process_image(data).content

    for secret in (b"Someone Private", b"secret", b"PrivateCam", b"eXIf", b"tEXt"):
        assert secret not in content


def test_webp_exif_and_xmp_are_dropped_and_orientation_applied(
    small_photo: Image.Image,
) -> None:
    """A WebP's EXIF turns it upright, then neither EXIF nor XMP is stored."""
    exif = Image.Exif()
    exif[0x0112] = 6
    exif[0x010F] = "PrivateCam"
    data = encode(small_photo, "WEBP", exif=exif, xmp=b"<x:xmpmeta>secret</x:xmpmeta>")

    result = process_image(data)

    assert (result.width, result.height) == (48, 64)
    for secret in (b"PrivateCam", b"secret", b"EXIF", b"XMP "):
        assert secret not in result.content


def test_a_jpeg_comment_and_trailing_bytes_are_dropped() -> None:
    """Bytes after the image's end (a polyglot's payload) are not stored."""
    data = read("rocket.jpg") + b"<script>alert(1)</script>"

    content = process_image(data).content

    assert b"<script>" not in content
    assert Image.open(io.BytesIO(content)).info.get("comment") is None


def test_a_damaged_exif_block_does_not_refuse_the_photo() -> None:
    """EXIF that cannot be parsed is dropped like any other, not a reason to refuse."""
    data = bytearray(read("rocket_exif_gps_orient6.jpg"))
    tiff_header = data.index(b"Exif\0\0") + 6
    data[tiff_header : tiff_header + 4] = b"XXXX"

    result = process_image(bytes(data))

    assert result.content_type == "image/jpeg"
    assert not Image.open(io.BytesIO(result.content)).getexif()


def test_an_mpo_photo_is_stored_as_its_first_jpeg_image(
    small_photo: Image.Image,
) -> None:
    """A JPEG with extra images (MPO) is stored as a plain JPEG of the first one."""
    second = small_photo.rotate(90)
    data = encode(small_photo, "MPO", save_all=True, append_images=[second])

    result = process_image(data)

    stored = Image.open(io.BytesIO(result.content))
    assert (result.content_type, stored.format) == ("image/jpeg", "JPEG")
    assert result.frames == 1
    assert stored.size == small_photo.size


def test_transparent_areas_are_white_in_the_thumbnail() -> None:
    """A transparent PNG's thumbnail is composited on white, not on black."""
    data = encode(Image.new("RGBA", (40, 30), (255, 0, 0, 0)), "PNG")

    thumbnail = Image.open(io.BytesIO(process_image(data).thumbnail))

    assert all(channel > 240 for channel in thumbnail.getpixel((20, 15)))


def test_a_palette_image_with_a_transparent_index_keeps_it(
    small_photo: Image.Image,
) -> None:
    """A paletted PNG's transparent colour is still transparent once stored."""
    paletted = small_photo.convert("P")
    data = encode(paletted, "PNG", transparency=0)

    stored = Image.open(io.BytesIO(process_image(data).content))

    assert stored.info.get("transparency") == 0


def animation(small_photo: Image.Image, *, holes: bool) -> list[Image.Image]:
    frames = [small_photo.rotate(30 * index).convert("RGBA") for index in range(5)]
    if holes:
        for index, frame in enumerate(frames):
            frame.paste((0, 0, 0, 0), (index * 5, 0, index * 5 + 10, 48))
    return frames


@pytest.mark.parametrize(
    ("image_format", "holes"),
    [("GIF", False), ("GIF", True), ("WEBP", False), ("WEBP", True), ("PNG", True)],
    ids=["gif", "gif-transparent", "webp", "webp-transparent", "apng-transparent"],
)
def test_animations_keep_every_frame_its_timing_and_loop(
    image_format: str, holes: bool, small_photo: Image.Image
) -> None:
    """Animated GIF, WebP and PNG keep frames, transparency, durations and loop."""
    frames = animation(small_photo, holes=holes)
    if image_format == "GIF" and not holes:
        frames = [frame.convert("RGB") for frame in frames]
    durations = [100, 200, 300, 400, 500]
    data = encode(
        frames[0],
        image_format,
        save_all=True,
        append_images=frames[1:],
        duration=durations,
        loop=3,
        **({"disposal": 2} if image_format == "GIF" else {}),
    )

    result = process_image(data)

    assert result.frames == 5
    before, after = rgba_frames(data), rgba_frames(result.content)
    for (old, _), (new, duration), expected in zip(
        before, after, durations, strict=True
    ):
        assert duration == expected
        alpha = ImageChops.difference(old.getchannel("A"), new.getchannel("A"))
        assert alpha.getbbox() is None
        assert max(ImageStat.Stat(ImageChops.difference(old, new)).mean) < 4
    assert Image.open(io.BytesIO(result.content)).info.get("loop") == 3


# --- fuzzing: nothing but Parley's refusals escapes --------------------------------

FUZZ_SEEDS = [
    "rocket_exif_gps_orient6.jpg",
    "coffee.webp",
    "chelsea_animated.gif",
    "small.png",
]


def fuzz_seed(name: str) -> bytes:
    if name == "small.png":
        small = open_image("chelsea.png")
        small.thumbnail((64, 64))
        return encode(small, "PNG")
    return read(name)


SEED_BYTES = {name: fuzz_seed(name) for name in FUZZ_SEEDS}


@st.composite
def damaged_images(draw: st.DrawFn) -> bytes:
    data = bytearray(SEED_BYTES[draw(st.sampled_from(FUZZ_SEEDS))])
    flips = draw(
        st.lists(
            st.tuples(st.integers(0, len(data) - 1), st.integers(0, 7)), max_size=8
        )
    )
    for position, bit in flips:
        data[position] ^= 1 << bit
    cut = draw(st.one_of(st.just(len(data)), st.integers(1, len(data))))
    return bytes(data[:cut])


def assert_processed_or_refused(data: bytes) -> None:
    try:
        result = process_image(data)
    except ParleyError as error:
        assert error.code in {"image_unreadable", "image_too_many_pixels"}
        event(error.code)
        return
    event("accepted")
    assert isinstance(result, ProcessedImage)
    assert result.thumbnail.startswith(b"\xff\xd8")


MAGIC = [
    b"",
    b"\xff\xd8\xff",
    b"\x89PNG\r\n\x1a\n",
    b"GIF89a",
    b"RIFF\0\0\0\0WEBPVP8 ",
    b"RIFF\0\0\0\0WEBPVP8X",
]


# Warnings as errors, so that a warning Pillow gives on odd input cannot escape either.
@pytest.mark.filterwarnings("error")
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(MAGIC), st.binary(max_size=4096))
def test_random_bytes_are_processed_or_refused_with_a_parley_error(
    magic: bytes, rest: bytes
) -> None:
    """Arbitrary bytes, bare or behind a format's magic, raise only a ParleyError."""
    assert_processed_or_refused(magic + rest)


@pytest.mark.filterwarnings("error")
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(damaged_images())
def test_damaged_real_images_are_processed_or_refused_with_a_parley_error(
    data: bytes,
) -> None:
    """Real images with flipped bits and cut short never raise anything else."""
    assert_processed_or_refused(data)
