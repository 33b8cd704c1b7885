"""The template language of `mcpTemplates`: Jinja2's sandboxed environment, and nothing else.

Owns the one environment (sandboxed: no attribute access to internals, no imports, no file
loading; undefined names are errors, not empty strings), compiling a field's text once, and
recognising the Handlebars forms of 1MCP's templates so the error says how to write them here.
Does not know the config's shape (`model` validates, `templates` renders whole entries).
Jinja2 is loaded with the first template compiled: a config without templates never pays for it.
"""

from __future__ import annotations

import functools
import re
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from jinja2 import Template

# 1MCP's Handlebars blocks and helpers, and what they are in Jinja
_HANDLEBARS = re.compile(r"\{\{\s*([#/^]|else\s*\}\}|\{)")
HANDLEBARS_HINT = (
    "this looks like a Handlebars template (1MCP); here templates are Jinja: "
    "{{#if project.git}}...{{else}}...{{/if}} is {% if project.git %}...{% else %}...{% endif %}, "
    "{{#each xs}}{{this}}{{/each}} is {% for x in xs %}{{ x }}{% endfor %}, "
    "and {{{raw}}} is {{ raw }}; {{project.path}} is the same in both"
)


@functools.cache
def environment() -> Any:
    """The one sandboxed environment."""
    from jinja2 import StrictUndefined
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    return ImmutableSandboxedEnvironment(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=True)


def render_errors() -> tuple[type[Exception], ...]:
    """What rendering a compiled template may raise for a context (undefined names, sandbox refusals)."""
    from jinja2 import TemplateError

    return (TemplateError,)


class SyntaxProblem(Exception):
    """A field's text is not a template this hub can render (the message says why)."""


def is_template(text: str) -> bool:
    return "{{" in text or "{%" in text or "{#" in text


def first_template(value: Any, path: str = "") -> str | None:
    """The dotted path of the first string in `value` (nested dicts and lists) that is a template."""
    if isinstance(value, str):
        return path if is_template(value) else None
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, item in items:
        if found := first_template(item, f"{path}.{key}" if path else str(key)):
            return found
    return None


@functools.lru_cache(maxsize=1024)
def compiled(text: str) -> Template:
    """The compiled template of `text` (cached: the same text renders for many contexts)."""
    if _HANDLEBARS.search(text):
        raise SyntaxProblem(HANDLEBARS_HINT)
    from jinja2 import TemplateSyntaxError

    try:
        template: Template = environment().from_string(text)
        return template
    except TemplateSyntaxError as exc:
        raise SyntaxProblem(f"template syntax error: {exc.message}") from None
