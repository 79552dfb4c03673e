"""What an image file's header declares about its size, read before anything is decoded: a frame
that declares too many pixels is refused before its memory is allocated."""

from __future__ import annotations

from actionrec.errors import FrameTooLargeError

HEADER_BYTES = 256 * 1024  # a JPEG's size marker may follow large EXIF data


def image_dimensions(head: bytes) -> tuple[int, int] | None:
    """(width, height) as a PNG, JPEG, GIF, WebP or BMP header declares them; None for anything else."""
    if head.startswith(b"\x89PNG\r\n\x1a\n") and head[12:16] == b"IHDR" and len(head) >= 24:
        return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")
    if head[:6] in (b"GIF87a", b"GIF89a") and len(head) >= 10:
        return int.from_bytes(head[6:8], "little"), int.from_bytes(head[8:10], "little")
    if head.startswith(b"BM") and len(head) >= 26:
        return (abs(int.from_bytes(head[18:22], "little", signed=True)),
                abs(int.from_bytes(head[22:26], "little", signed=True)))
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP" and len(head) >= 30:
        chunk = head[12:16]
        if chunk == b"VP8 ":
            return int.from_bytes(head[26:28], "little") & 0x3FFF, int.from_bytes(head[28:30], "little") & 0x3FFF
        if chunk == b"VP8L":
            bits = int.from_bytes(head[21:25], "little")
            return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
        if chunk == b"VP8X":
            return int.from_bytes(head[24:27], "little") + 1, int.from_bytes(head[27:30], "little") + 1
        return None
    if head.startswith(b"\xff\xd8"):
        return _jpeg_dimensions(head)
    return None


_JPEG_FRAME_MARKERS = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def _jpeg_dimensions(head: bytes) -> tuple[int, int] | None:
    """The size in a JPEG's start-of-frame segment, walking the segments before it."""
    at = 2
    while at + 9 <= len(head):
        if head[at] != 0xFF:
            return None
        marker = head[at + 1]
        if marker == 0xFF:  # fill byte
            at += 1
        elif marker == 0x01 or 0xD0 <= marker <= 0xD8:  # segments without a length
            at += 2
        elif marker in _JPEG_FRAME_MARKERS:
            return int.from_bytes(head[at + 7:at + 9], "big"), int.from_bytes(head[at + 5:at + 7], "big")
        else:
            at += 2 + int.from_bytes(head[at + 2:at + 4], "big")
    return None


def check_image_header(head: bytes, max_pixels: int, name: str, hint: str = "") -> None:
    """FrameTooLargeError when `head` is an image header declaring more than `max_pixels` pixels."""
    size = image_dimensions(head)
    if size is not None and size[0] * size[1] > max_pixels:
        raise FrameTooLargeError(f"{name}: an image of {size[0]}x{size[1]} pixels, larger than the limit of "
                                 f"{max_pixels:,} pixels; nothing was decoded.{hint}")
