"""Where content lives in the store."""


def content_key(fingerprint: str) -> str:
    """Content is stored once per fingerprint; file names never enter object keys."""
    return f"content/{fingerprint}"


def thumbnail_key(fingerprint: str) -> str:
    """A content's thumbnail (gateway/core/thumbnails.py), one per fingerprint, beside the content itself."""
    return f"thumbnails/{fingerprint}"
