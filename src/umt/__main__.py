"""``python -m umt``: the ``umt`` command."""

from umt.cli import main

main()
