"""What the gateway and its clients share: the contract's fingerprint definition
(fingerprints.py), the states of files and chunks (states.py), and the tree's name and
path rules with its free and conflicted-copy names (paths.py), the bounds of a batch of small files
(batches.py).

Imports nothing else of this project, so `dbx` installs and reads without the server.
"""
