"""The template language: sandboxed Jinja, strict about undefined names, compiled once per text."""

from __future__ import annotations

import pytest
from jinja2 import UndefinedError

from onemcp.config import jinja


def test_compiled_once_per_text() -> None:
    assert jinja.compiled("{{ a }}") is jinja.compiled("{{ a }}")


def test_undefined_names_are_errors_not_empty_strings() -> None:
    with pytest.raises(UndefinedError):
        jinja.compiled("{{ nope }}").render({})


@pytest.mark.parametrize("text", ["{{#if x}}y{{/if}}", "{{#each xs}}{{this}}{{/each}}", "{{{raw}}}", "a {{else}} b"])
def test_handlebars_forms_are_recognised(text: str) -> None:
    with pytest.raises(jinja.SyntaxProblem, match="Handlebars"):
        jinja.compiled(text)


def test_is_template() -> None:
    assert jinja.is_template("x {{ y }}") and jinja.is_template("{% if a %}{% endif %}")
    assert not jinja.is_template("plain --flag")
