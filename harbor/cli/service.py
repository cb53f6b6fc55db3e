"""``ah service install``: write the systemd user unit for this installation."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import asyncclick as click

UNIT_NAME = "ah-harbor.service"


def unit_template() -> str:
    """The shipped user unit (``systemd/ah-harbor.service``), from the source tree or the package."""
    source = Path(__file__).resolve().parents[2] / "systemd" / UNIT_NAME
    if source.exists():
        return source.read_text()
    from importlib.resources import files

    return (files("harbor") / "data" / UNIT_NAME).read_text()


def ah_command() -> str:
    """How systemd should start this very installation of ``ah``."""
    script = Path(sys.argv[0])
    if script.name == "ah" and script.exists():
        return shlex.quote(str(script.resolve()))
    found = shutil.which("ah")
    if found:
        return shlex.quote(found)
    return f"{shlex.quote(sys.executable)} -m harbor.cli"


@click.group()
def service() -> None:
    """Install the daemon as a systemd user service."""


@service.command("install")
@click.option("--enable/--no-enable", default=True, help="Also run systemctl --user enable --now.")
@click.option("--extra-args", default="", help="Appended to the ExecStart line (e.g. '--port 9000').")
def install(enable: bool, extra_args: str) -> None:
    """Write ~/.config/systemd/user/ah-harbor.service pointing at this ah."""
    config_home = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    target = config_home / "systemd" / "user" / UNIT_NAME
    target.parent.mkdir(parents=True, exist_ok=True)
    text = unit_template().replace("%h/.local/bin/ah", ah_command())
    if extra_args:
        text = text.replace("--log-format json", f"--log-format json {extra_args}")
    target.write_text(text)
    click.echo(f"wrote {target}")
    if enable:
        for argv in (["systemctl", "--user", "daemon-reload"],
                     ["systemctl", "--user", "enable", "--now", UNIT_NAME]):
            result = subprocess.run(argv, capture_output=True, text=True)
            if result.returncode != 0:
                raise click.ClickException(f"{' '.join(argv)} failed: {result.stderr.strip()}")
        click.echo("enabled and started: systemctl --user status ah-harbor")
