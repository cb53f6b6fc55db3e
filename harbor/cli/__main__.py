"""``python -m harbor.cli`` — the same as the ``ah`` command."""

from harbor.cli import main

main()
