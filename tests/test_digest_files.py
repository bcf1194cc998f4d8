"""The digest files of a run appear together or not at all, with no temporary file in `<out>`."""

from __future__ import annotations

from pathlib import Path

import pytest

from graphs.digest_files import DigestNotWritten, write_digest

NAMES = ("digest.md", "digest.html", "digest.xml", "digest.json")


def files(tag: str) -> dict[str, str]:
    return {name: f"{tag} {name}\n" for name in NAMES}


def contents(out: Path) -> dict[str, str]:
    return {p.name: p.read_text() for p in out.iterdir() if p.is_file()}


def leftovers(out: Path) -> list[str]:
    """Temporary directories or files left beside or inside `<out>`."""
    return [p.name for p in [*out.parent.iterdir(), *out.iterdir()] if ".digest-tmp" in p.name]


def test_all_four_files_are_published_and_no_temporary_file_remains(tmp_path: Path) -> None:
    out = tmp_path / "site"
    assert write_digest(out, files("new")) == out
    assert contents(out) == files("new")
    assert leftovers(out) == []


def test_a_second_publication_replaces_every_file(tmp_path: Path) -> None:
    out = tmp_path / "site"
    write_digest(out, files("old"))
    write_digest(out, files("new"))
    assert contents(out) == files("new")
    assert sorted(p.name for p in out.iterdir()) == sorted(NAMES)


def test_a_failure_while_writing_leaves_the_previous_digest_intact(tmp_path: Path) -> None:
    out = tmp_path / "site"
    write_digest(out, files("old"))
    broken = {**files("new"), "digest.xml": "a lone surrogate \ud800 cannot be UTF-8"}
    with pytest.raises(DigestNotWritten, match="previous digest is unchanged") as failed:
        write_digest(out, broken)
    assert "UnicodeEncodeError" in str(failed.value)
    assert contents(out) == files("old")
    assert leftovers(out) == []


def test_a_failure_while_swapping_puts_back_the_files_already_replaced(tmp_path: Path) -> None:
    out = tmp_path / "site"
    write_digest(out, files("old"))
    (out / "digest.html").unlink()
    (out / "digest.html").mkdir()  # a directory in the way: its rename fails for real
    (out / "digest.html" / "keep").write_text("x")
    before = contents(out)
    with pytest.raises(DigestNotWritten, match="digest.html|Is a directory") as failed:
        write_digest(out, files("new"))
    assert "previous digest is unchanged" in str(failed.value)
    assert contents(out) == before  # digest.md, renamed first, is the old one again
    assert leftovers(out) == []


def test_an_out_path_that_is_a_file_is_a_clear_error(tmp_path: Path) -> None:
    out = tmp_path / "site"
    out.write_text("not a directory")
    with pytest.raises(DigestNotWritten, match="cannot write the digest to"):
        write_digest(out, files("new"))
    assert out.read_text() == "not a directory"
    assert [p.name for p in tmp_path.iterdir()] == ["site"]
