"""``dbx`` commands kept apart from client/cli.py, one module per family (the tree: tree.py)."""
