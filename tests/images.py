"""Files for the thumbnail tests, made here: images of each format, a PDF, and hostile ones."""
from __future__ import annotations

import io
import struct
import zlib

from PIL import Image
from pillow_heif import register_heif_opener

register_heif_opener()


def picture(size: tuple[int, int] = (640, 480)) -> Image.Image:
    """A picture with something in it (stripes), so encoders make real data."""
    image = Image.new("RGB", size, (30, 90, 200))
    for x in range(0, size[0], 40):
        image.paste((240, 200, 40), (x, 0, x + 20, size[1]))
    return image


def encoded(kind: str, size: tuple[int, int] = (640, 480)) -> bytes:
    """``picture`` as ``kind``: JPEG, PNG, WEBP, GIF, HEIF or PDF."""
    out = io.BytesIO()
    picture(size).save(out, kind)
    return out.getvalue()


def png_bomb(width: int = 20_000, height: int = 20_000) -> bytes:
    """A valid PNG of ``width`` x ``height`` one-bit pixels, all zero: a few tens of KiB that decode to
    hundreds of megapixels (a decompression bomb)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    row = b"\x00" + bytes((width + 7) // 8)
    packer = zlib.compressobj(9)
    body = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", body) + chunk(b"IEND", b"")


def truncated_jpeg() -> bytes:
    whole = encoded("JPEG")
    return whole[: len(whole) // 2]


def garbage_pdf() -> bytes:
    """A PDF header followed by bytes that are no PDF."""
    return b"%PDF-1.7\n" + bytes(range(256)) * 64


def thumbnail_size(data: bytes) -> tuple[str | None, tuple[int, int]]:
    """(format, size) of a thumbnail's bytes."""
    with Image.open(io.BytesIO(data)) as image:
        return image.format, image.size
