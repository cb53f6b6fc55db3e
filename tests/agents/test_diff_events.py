"""The ``diff`` event: whole texts up to 64 KiB / 2,000 lines, heads and tails beyond."""

from __future__ import annotations

from harbor.agents.adapters import make_diff_drafts
from harbor.agents.adapters.base import AdapterBase

URL = "/api/v1/sessions/s1/diff/src/big.py"


def numbered(n: int, prefix: str = "line") -> str:
    return "".join(f"{prefix} {i}\n" for i in range(1, n + 1))


def test_small_change_carries_both_texts() -> None:
    (draft,) = make_diff_drafts("src/a.py", "a\n", "b\n", URL)
    assert draft.kind == "diff"
    assert draft.data == {"path": "src/a.py", "oldText": "a\n", "newText": "b\n", "truncated": False}


def test_exactly_2000_lines_is_whole_and_2001_is_truncated() -> None:
    (whole,) = make_diff_drafts("f", numbered(1000), numbered(1000), URL)
    assert whole.data["truncated"] is False
    (cut,) = make_diff_drafts("f", numbered(1000), numbered(1001), URL)
    assert cut.data["truncated"] is True


def test_truncated_diff_has_100_line_heads_and_tails_and_the_full_url() -> None:
    (draft,) = make_diff_drafts("src/big.py", numbered(1500, "old"), numbered(600, "new"), URL)
    data = draft.data
    assert set(data) == {"path", "truncated", "oldHead", "oldTail", "newHead", "newTail", "fullDiffUrl"}
    assert data["fullDiffUrl"] == URL
    assert data["oldHead"] == numbered(100, "old")
    assert data["oldTail"] == "".join(f"old {i}\n" for i in range(1401, 1501))
    assert data["newHead"].splitlines()[-1] == "new 100"
    assert data["newTail"].splitlines() == [f"new {i}" for i in range(501, 601)]


def test_short_side_of_a_truncated_diff_is_not_repeated_in_its_tail() -> None:
    (draft,) = make_diff_drafts("f", numbered(50), numbered(3000), URL)
    assert draft.data["oldHead"] == numbered(50)
    assert draft.data["oldTail"] == ""


def test_size_is_measured_in_utf8_bytes() -> None:
    # 33,000 characters but 66,000 bytes: over 64 KiB although few characters.
    (draft,) = make_diff_drafts("f", "é" * 30_000, "é" * 3_000, URL)
    assert draft.data["truncated"] is True
    (ascii_draft,) = make_diff_drafts("f", "e" * 30_000, "e" * 3_000, URL)
    assert ascii_draft.data["truncated"] is False


def test_one_enormous_line_cannot_defeat_truncation() -> None:
    (draft,) = make_diff_drafts("min.js", "x" * 1_000_000, "y" * 1_000_000, URL)
    assert draft.data["truncated"] is True
    assert all(len(draft.data[k]) <= 16 * 1024 for k in ("oldHead", "oldTail", "newHead", "newTail"))


def test_full_diff_url_names_the_session_and_quotes_the_path() -> None:
    adapter = AdapterBase("01JSESSION")
    assert adapter.diff_url("docs/read me.md") == "/api/v1/sessions/01JSESSION/diff/docs/read%20me.md"
