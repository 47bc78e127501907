"""Where content lives in the store."""


def content_key(fingerprint: str) -> str:
    """Content is stored once per fingerprint; file names never enter object keys."""
    return f"content/{fingerprint}"
