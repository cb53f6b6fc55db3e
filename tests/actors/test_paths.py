"""Path safety: nothing a client names may lead outside the workspace, whatever the spelling."""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import unquote

import pytest

from actors.paths import PathOutsideWorkspace, normalize_rel, open_inside, resolve_inside


@pytest.fixture
def root(tmp_path: Path) -> Path:
    ws = tmp_path / "ws"
    (ws / "src").mkdir(parents=True)
    (ws / "src" / "main.py").write_text("print('hi')\n")
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "secret.txt").write_text("secret\n")
    return ws


@pytest.mark.parametrize("rel", [
    "../../etc/passwd",
    "../outside/secret.txt",
    "src/../../outside/secret.txt",
    unquote("%2e%2e/%2e%2e/etc/passwd"),          # the HTTP layer decoded it once: ../../etc/passwd
    unquote("src/%2e%2e%2f%2e%2e%2foutside"),     # src/../../outside
    "/etc/passwd",
    unquote("%2fetc%2fpasswd"),                    # /etc/passwd
    "src/main.py\x00.txt",
    unquote("src%00"),
])
def test_escapes_are_refused(root: Path, rel: str) -> None:
    with pytest.raises(PathOutsideWorkspace):
        resolve_inside(root, rel)


def test_literal_percent_sequences_stay_harmless_names(root: Path) -> None:
    # Not decoded a second time: "..%2fetc" is one odd file name inside the workspace.
    assert resolve_inside(root, "..%2fetc") == root.resolve() / "..%2fetc"
    assert resolve_inside(root, "%2e%2e/x") == root.resolve() / "%2e%2e" / "x"


def test_plain_paths_resolve_inside(root: Path) -> None:
    assert resolve_inside(root, "src/main.py") == root.resolve() / "src" / "main.py"
    assert resolve_inside(root, "./src//main.py") == root.resolve() / "src" / "main.py"
    assert resolve_inside(root, "") == root.resolve()
    assert resolve_inside(root, "not/yet/there.txt") == root.resolve() / "not" / "yet" / "there.txt"
    assert normalize_rel("./a//b/") == "a/b"


def test_symlink_to_filesystem_root_is_refused(root: Path) -> None:
    (root / "rootlink").symlink_to("/")
    for rel in ("rootlink", "rootlink/etc/passwd"):
        with pytest.raises(PathOutsideWorkspace):
            resolve_inside(root, rel)


def test_symlinked_directory_escaping_is_refused(root: Path, tmp_path: Path) -> None:
    (root / "src" / "vendor").symlink_to(tmp_path / "outside")
    with pytest.raises(PathOutsideWorkspace):
        resolve_inside(root, "src/vendor/secret.txt")
    # Relative link targets and links that only dangle outside are caught too.
    (root / "up").symlink_to("../outside")
    (root / "dangling").symlink_to(tmp_path / "outside" / "missing")
    for rel in ("up/secret.txt", "dangling"):
        with pytest.raises(PathOutsideWorkspace):
            resolve_inside(root, rel)


def test_symlink_within_workspace_is_followed(root: Path) -> None:
    (root / "alias").symlink_to("src")
    assert resolve_inside(root, "alias/main.py") == root.resolve() / "src" / "main.py"


def test_root_reached_through_a_symlink(root: Path, tmp_path: Path) -> None:
    (tmp_path / "wslink").symlink_to(root)
    assert resolve_inside(tmp_path / "wslink", "src/main.py") == root.resolve() / "src" / "main.py"


def test_open_inside_reads_files_and_refuses_escapes(root: Path, tmp_path: Path) -> None:
    fd = open_inside(root, "src/main.py")
    with os.fdopen(fd, "rb") as f:
        assert f.read() == b"print('hi')\n"
    (root / "leak").symlink_to(tmp_path / "outside" / "secret.txt")
    with pytest.raises(PathOutsideWorkspace):
        open_inside(root, "leak")
    with pytest.raises(FileNotFoundError):
        open_inside(root, "src/missing.py")
