"""The ``ah`` command line (asyncclick, run on trio)."""

from __future__ import annotations

from harbor.cli.main import cli


def main() -> None:
    """Console-script entry point."""
    # asyncclick runs on asyncio once anyio is installed (httpx brings it): ask for trio.
    cli(_anyio_backend="trio")


__all__ = ["cli", "main"]
