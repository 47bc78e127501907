"""The `dbx` command-line client and the Python client library under it.

``client.api.GatewayClient`` speaks the gateway's HTTP contract;
``client.upload`` and ``client.download`` move file contents (straight to
the store and from the CDN tier); ``client.cli`` is the ``dbx`` command.
"""
