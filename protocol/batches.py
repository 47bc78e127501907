"""Many small files in one request: ``POST /dropbox/v1/files/batch`` (beyond the contract; the gateway's
OpenAPI document describes it). Its bounds, shared by the gateway, which refuses a larger batch, and its
clients, which cut their batches to them.

Imports nothing else of this project.
"""
from __future__ import annotations

# Files in one batch request, at most.
BATCH_MAX_FILES = 100
# The files' bytes in one batch request together, at most (each file also at most the gateway's
# inline_upload_limit, and a file of more than one chunk is stored as a chunked upload would be).
BATCH_MAX_BYTES = 4 * 1024 * 1024
