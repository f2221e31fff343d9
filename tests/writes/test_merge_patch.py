"""RFC 7396 JSON merge patch: the examples of its Appendix A, and the section 3 example."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from gateway.writes.merge_patch import merge_patch

# RFC 7396, Appendix A: (original, patch, result), in the order the RFC lists them.
APPENDIX_A = [
    ({"a": "b"}, {"a": "c"}, {"a": "c"}),
    ({"a": "b"}, {"b": "c"}, {"a": "b", "b": "c"}),
    ({"a": "b"}, {"a": None}, {}),
    ({"a": "b", "b": "c"}, {"a": None}, {"b": "c"}),
    ({"a": ["b"]}, {"a": "c"}, {"a": "c"}),
    ({"a": "c"}, {"a": ["b"]}, {"a": ["b"]}),
    ({"a": {"b": "c"}}, {"a": {"b": "d", "c": None}}, {"a": {"b": "d"}}),
    ({"a": [{"b": "c"}]}, {"a": [1]}, {"a": [1]}),
    (["a", "b"], ["c", "d"], ["c", "d"]),
    ({"a": "b"}, ["c"], ["c"]),
    ({"a": "foo"}, None, None),
    ({"a": "foo"}, "bar", "bar"),
    ({"e": None}, {"a": 1}, {"e": None, "a": 1}),
    ([1, 2], {"a": "b", "c": None}, {"a": "b"}),
    ({}, {"a": {"bb": {"ccc": None}}}, {"a": {"bb": {}}}),
]


@pytest.mark.parametrize(("original", "patch", "result"), APPENDIX_A)
def test_appendix_a(original: Any, patch: Any, result: Any) -> None:
    assert merge_patch(original, patch) == result


@pytest.mark.parametrize(("original", "patch", "result"), APPENDIX_A)
def test_inputs_are_not_modified(original: Any, patch: Any, result: Any) -> None:
    before_original, before_patch = copy.deepcopy(original), copy.deepcopy(patch)
    merge_patch(original, patch)
    assert original == before_original
    assert patch == before_patch


def test_section_3_example() -> None:
    target = {
        "title": "Goodbye!",
        "author": {"givenName": "John", "familyName": "Doe"},
        "tags": ["example", "sample"],
        "content": "This will be unchanged",
    }
    patch = {
        "title": "Hello!",
        "phoneNumber": "+01-123-456-7890",
        "author": {"familyName": None},
        "tags": ["example"],
    }
    assert merge_patch(target, patch) == {
        "title": "Hello!",
        "author": {"givenName": "John"},
        "tags": ["example"],
        "content": "This will be unchanged",
        "phoneNumber": "+01-123-456-7890",
    }


def test_result_shares_no_object_with_the_target() -> None:
    # A nested object the patch touches is a new object: changing the result later must
    # not reach back into the stored original.
    target = {"a": {"b": 1}, "keep": {"x": 1}}
    result = merge_patch(target, {"a": {"c": 2}})
    result["a"]["b"] = 99
    assert target == {"a": {"b": 1}, "keep": {"x": 1}}
