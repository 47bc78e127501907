"""Where content lives in the store."""


def content_key(fingerprint: str) -> str:
    """Content is stored once per fingerprint; file names never enter object keys."""
    return f"content/{fingerprint}"


def thumbnail_key(fingerprint: str) -> str:
    """A content's thumbnail (gateway/core/thumbnails.py), one per fingerprint, beside the content itself."""
    return f"thumbnails/{fingerprint}"


def page_key(fingerprint: str) -> str:
    """A PDF content's first page for the preview (gateway/core/thumbnails.py), beside its thumbnail (under
    the prefix the CDN tier's read-only key may read; a sibling key, not below it: a filer-backed store such
    as SeaweedFS cannot hold both a key and keys under it as a folder)."""
    return f"thumbnails/{fingerprint}-page"
