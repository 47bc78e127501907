"""boto3's ``upload_file`` as a command of its own, started afresh like ``dbx`` is.

    python -m bench.s3copy SOURCE BUCKET KEY --chunk-mib 8 --parallel 4

The store's address and credentials come from ``AWS_ENDPOINT_URL``,
``AWS_ACCESS_KEY_ID`` and ``AWS_SECRET_ACCESS_KEY``, as for the AWS CLI. Timed
from outside, it pays what a ``dbx upload`` pays and an in-process call does
not: starting Python, importing the SDK, making the client.
"""
from __future__ import annotations

import argparse
import sys

MIB = 1024 * 1024


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.s3copy", description=__doc__.split("\n\n")[0])
    parser.add_argument("source")
    parser.add_argument("bucket")
    parser.add_argument("key")
    parser.add_argument("--chunk-mib", type=int, default=8)
    parser.add_argument("--parallel", type=int, default=4)
    args = parser.parse_args(argv)
    import boto3
    from boto3.s3.transfer import TransferConfig

    chunk = args.chunk_mib * MIB
    transfer = TransferConfig(multipart_threshold=chunk, multipart_chunksize=chunk, max_concurrency=args.parallel)
    boto3.client("s3", region_name="us-east-1").upload_file(args.source, args.bucket, args.key, Config=transfer)
    return 0


if __name__ == "__main__":
    sys.exit(main())
