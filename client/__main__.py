"""``python -m client`` is the ``dbx`` command."""
import sys

from client.cli import main

sys.exit(main())
