"""The search-mode meta-tools' rendering: one line per hit, whatever an upstream's schema holds."""

from __future__ import annotations

from typing import Any

import pytest

from onemcp.search import meta


@pytest.mark.parametrize("required", [None, 5, "a", {"a": True}])
def test_a_malformed_required_marks_no_parameter_and_breaks_no_search(required: Any) -> None:
    tool = {
        "name": "zebra",
        "description": "Zebra invoice.",
        "inputSchema": {"properties": {"a": {}}, "required": required},
    }
    assert meta.signature(tool) == "zebra(a?: any)"
    assert meta.render_hits("zebra invoice", [tool], 1).startswith("zebra(a?: any) - Zebra invoice.")


def test_required_parameters_are_unmarked_and_optional_ones_marked() -> None:
    schema = {"properties": {"a": {"type": "string"}, "b": {"type": ["integer", "null"]}}, "required": ["a"]}
    assert meta.signature({"name": "t", "inputSchema": schema}) == "t(a: string, b?: integer|null)"
