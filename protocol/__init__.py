"""What the gateway and its clients share: the contract's fingerprint definition.

Imports nothing else of this project, so `dbx` installs and reads without the server.
"""
