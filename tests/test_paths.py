"""The tree's name rules (protocol/paths.py): examples from the contract, and properties."""
from __future__ import annotations

import datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol.paths import (
    MAX_NAME_BYTES,
    InvalidName,
    check_name,
    conflicted_copy_names,
    free_names,
    join_path,
    name_key,
    numbered_name,
    parent_path,
    split_extension,
    split_path,
)


@pytest.mark.parametrize("name", ["", ".", "..", "a/b", "a\\b", "tab\there", "nul\x00", "del\x7f", "x" * 256, "é" * 128])
def test_the_contract_refuses_these_names(name: str) -> None:
    with pytest.raises(InvalidName):
        check_name(name)


@pytest.mark.parametrize("name", ["a", "...", ".bashrc", "Report final.pdf", "x" * 255, "é" * 127, "日本語.txt", "a b"])
def test_the_contract_allows_these_names(name: str) -> None:
    assert check_name(name) == name


def test_names_differing_in_case_or_normal_form_are_the_same_name() -> None:
    assert name_key("Report.pdf") == name_key("report.PDF")
    assert name_key("caf\u00e9") == name_key("cafe\u0301")  # NFC and NFD spellings
    assert name_key("STRASSE") == name_key("straße")
    assert name_key("a.txt") != name_key("b.txt")


@pytest.mark.parametrize(
    ("path", "names"),
    [("/", []), ("/a", ["a"]), ("/a/b.txt", ["a", "b.txt"])],
)
def test_paths_split_into_names(path: str, names: list[str]) -> None:
    assert split_path(path) == names


@pytest.mark.parametrize("path", ["", "a/b", "/a//b", "/a/", "//", "/a/../b", "/a/./b"])
def test_paths_with_empty_or_relative_segments_are_refused(path: str) -> None:
    with pytest.raises(InvalidName):
        split_path(path)


def test_join_and_parent() -> None:
    assert join_path("/", "a") == "/a"
    assert join_path("/a", "b") == "/a/b"
    assert parent_path("/a/b") == "/a"
    assert parent_path("/a") == "/"


@pytest.mark.parametrize(
    ("name", "folder", "expected"),
    [
        ("report.pdf", False, "report (1).pdf"),
        ("archive.tar.gz", False, "archive.tar (1).gz"),
        (".bashrc", False, ".bashrc (1)"),
        ("notes", False, "notes (1)"),
        ("photos.2024", True, "photos.2024 (1)"),
    ],
)
def test_numbered_names(name: str, folder: bool, expected: str) -> None:
    assert numbered_name(name, 1, folder=folder) == expected


def test_free_names_start_with_the_name_itself() -> None:
    names = free_names("a.txt")
    assert [next(names) for _ in range(3)] == ["a.txt", "a (1).txt", "a (2).txt"]


def test_conflicted_copy_names() -> None:
    names = conflicted_copy_names("report.pdf", datetime.date(2026, 12, 4))
    assert next(names) == "report (conflicted copy 2026-12-04).pdf"
    assert next(names) == "report (conflicted copy 2026-12-04) (1).pdf"


def test_split_extension() -> None:
    assert split_extension("a.b.c") == ("a.b", ".c")
    assert split_extension(".env") == (".env", "")
    assert split_extension("a.b", folder=True) == ("a.b", "")


names = st.text(min_size=1, max_size=300).filter(lambda s: s not in (".", "..") and "/" not in s and "\\" not in s)


@given(names, st.integers(min_value=1, max_value=10**6), st.booleans())
def test_a_numbered_name_of_a_valid_name_is_valid_and_different(name: str, n: int, folder: bool) -> None:
    try:
        check_name(name)
    except InvalidName:
        return
    numbered = numbered_name(name, n, folder=folder)
    assert check_name(numbered) == numbered
    assert len(numbered.encode()) <= MAX_NAME_BYTES
    assert name_key(numbered) != name_key(name)


@given(names, st.dates())
def test_a_conflicted_copy_name_is_valid_and_different(name: str, day: datetime.date) -> None:
    try:
        check_name(name)
    except InvalidName:
        return
    copies = conflicted_copy_names(name, day)
    first, second = next(copies), next(copies)
    assert check_name(first) and check_name(second)
    assert len({name_key(name), name_key(first), name_key(second)}) == 3


@given(st.text())
def test_name_key_is_idempotent(name: str) -> None:
    assert name_key(name_key(name)) == name_key(name)
