"""What the gateway and its clients share: the contract's fingerprint definition
(fingerprints.py) and the states of files and chunks (states.py).

Imports nothing else of this project, so `dbx` installs and reads without the server.
"""
