"""Make one thumbnail from one file's bytes, in a child process of its own: ``python -m gateway.thumbnailer``.

The bytes come on standard input, the WebP thumbnail goes to standard output (exit 0); its longer side
is ``EDGE`` pixels, or the edge given as a third argument (a PDF's first page for the preview,
``PAGE_EDGE``). A file that gets no thumbnail (not an image or PDF we read, a decompression bomb, truncated or malformed) exits
with NO_THUMBNAIL and one line on standard error saying why. gateway/core/thumbnails.py runs it and
kills it when it takes too long.

Why a process and not a thread of the gateway: the decoders are C (libjpeg, libpng, libwebp,
libheif, PDFium) and the input is anyone's. A crafted file may crash a decoder (a segfault would
end the gateway and every request in it), loop, or allocate without end. A thread can be neither
killed nor limited; a process can: before it reads a byte it limits its own address space
(RLIMIT_AS), CPU seconds (RLIMIT_CPU) and file writes (RLIMIT_FSIZE 0), and the parent ends it
after a wall-clock timeout. Imports only the standard library and the three decoders: nothing of
the gateway (no secret, no database) is in its memory.

Limits inside (besides those of the process):
- Pillow's decompression-bomb check: more than ``MAX_PIXELS`` pixels is refused before decoding
  (Pillow's warning made an error), whatever the file's size.
- Only the formats named in ``IMAGE_FORMATS`` are tried; truncated images are refused
  (``LOAD_TRUNCATED_IMAGES`` stays off); an animation gives its first frame.
- A PDF: only its first page is loaded and rendered, at a scale that makes its longer side
  ``EDGE`` (or the given edge) pixels; a page without a usable size is refused.
"""
from __future__ import annotations

import io
import resource
import sys
import warnings

NO_THUMBNAIL = 3
EDGE = 256  # the longer side of a thumbnail, pixels
PAGE_EDGE = 1400  # the longer side of a PDF's first page in the preview: an A4 page's text stays readable
MAX_PIXELS = 64_000_000  # an image with more is a decompression bomb to us (64 MP; phones make 12-50)
IMAGE_FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "HEIF")
PDF_MAGIC = b"%PDF-"
WEBP_QUALITY = 80


class NoThumbnail(Exception):
    """This file gets no thumbnail; the message says why."""


def limit_self(memory_bytes: int, cpu_seconds: int) -> None:
    """Limits on this process, set before any input is read; the kernel enforces them."""
    resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
    resource.setrlimit(resource.RLIMIT_CPU, (cpu_seconds, cpu_seconds))
    resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def is_pdf(data: bytes) -> bool:
    return data[:1024].lstrip().startswith(PDF_MAGIC)


def thumbnail(data: bytes, edge: int = EDGE) -> bytes:
    """The WebP thumbnail of an image or a PDF's first page; NoThumbnail for anything else."""
    picture = render_pdf(data, edge) if is_pdf(data) else open_image(data, edge)
    return encode(picture)


def open_image(data: bytes, edge: int = EDGE):
    from PIL import Image, ImageOps
    from pillow_heif import register_heif_opener

    register_heif_opener()
    Image.MAX_IMAGE_PIXELS = MAX_PIXELS
    warnings.simplefilter("error", Image.DecompressionBombWarning)
    try:
        image = Image.open(io.BytesIO(data), formats=IMAGE_FORMATS)
        if image.width * image.height > MAX_PIXELS:
            raise NoThumbnail(f"{image.width}x{image.height} pixels is more than {MAX_PIXELS}")
        image.seek(0)
        # draft(): a JPEG is decoded at the smallest scale still at least edge wide (1/2 .. 1/8).
        image.draft("RGB", (edge, edge))
        image.thumbnail((edge, edge))
        return ImageOps.exif_transpose(image)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise NoThumbnail(f"decompression bomb: {exc}") from exc
    except (OSError, SyntaxError, ValueError, EOFError, IndexError) as exc:
        # What Pillow raises for unknown formats, truncated and malformed files.
        raise NoThumbnail(f"unreadable image: {exc}") from exc


def render_pdf(data: bytes, edge: int = EDGE):
    import pypdfium2 as pdfium

    try:
        document = pdfium.PdfDocument(data)
        if len(document) < 1:
            raise NoThumbnail("a PDF without pages")
        page = document[0]
        width, height = page.get_size()
        if not (1 <= width <= 100_000 and 1 <= height <= 100_000):
            raise NoThumbnail(f"a first page of {width}x{height} points")
        return page.render(scale=edge / max(width, height)).to_pil()
    except pdfium.PdfiumError as exc:
        raise NoThumbnail(f"unreadable PDF: {exc}") from exc


def encode(picture) -> bytes:
    has_alpha = picture.mode in ("RGBA", "LA", "PA") or "transparency" in picture.info
    picture = picture.convert("RGBA" if has_alpha else "RGB")
    out = io.BytesIO()
    picture.save(out, "WEBP", quality=WEBP_QUALITY)
    return out.getvalue()


def main(argv: list[str]) -> int:
    memory_bytes, cpu_seconds = int(argv[0]), int(argv[1])
    edge = int(argv[2]) if len(argv) > 2 else EDGE
    limit_self(memory_bytes, cpu_seconds)
    data = sys.stdin.buffer.read()
    try:
        made = thumbnail(data, edge)
    except NoThumbnail as exc:
        print(str(exc)[:300], file=sys.stderr)
        return NO_THUMBNAIL
    except MemoryError:
        print("out of memory (the child's limit)", file=sys.stderr)
        return NO_THUMBNAIL
    except Exception as exc:  # noqa: BLE001 - whatever else a decoder or encoder raises: no thumbnail either
        print(f"{type(exc).__name__}: {exc}"[:300], file=sys.stderr)
        return NO_THUMBNAIL
    sys.stdout.buffer.write(made)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
