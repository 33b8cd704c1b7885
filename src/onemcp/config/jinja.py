"""The template language of `mcpTemplates`: Jinja2's sandboxed environment, and nothing else.

Owns the one environment (sandboxed: no attribute access to internals, no imports, no file
loading; undefined names are errors, not empty strings; every loop, call, filter, `*`, `+`, `~`,
`**` and `%` goes through `template_bounds`, which says what a rendering may cost), compiling a
field's text once, and recognising the Handlebars forms of 1MCP's templates so the error says how
to write them here.
Does not know the config's shape (`model` validates, `templates` renders whole entries).
Jinja2 is loaded with the first template compiled: a config without templates never pays for it.
"""

from __future__ import annotations

import functools
import re
from typing import TYPE_CHECKING, Any

from onemcp.config import template_bounds

if TYPE_CHECKING:
    from jinja2 import Template, nodes

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
    """The one sandboxed environment, its calls, operators and filters bounded (`template_bounds`)."""
    from jinja2 import StrictUndefined
    from jinja2.runtime import Context, LoopContext
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    class Bounded(ImmutableSandboxedEnvironment):
        intercepted_binops = frozenset({"*", "+", "**", "%"})

        def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
            template_bounds.before_binop(operator, left, right)
            return template_bounds.checked(super().call_binop(context, operator, left, right))

        def call(self, context: Context, obj: Any, /, *args: Any, **kwargs: Any) -> Any:
            template_bounds.before_call(obj, args, kwargs)
            if isinstance(obj, LoopContext) and args:  # a recursive loop's `loop(items)`: counted as a for's items
                args = (template_bounds.counted(args[0]), *args[1:])
            return template_bounds.checked(super().call(context, obj, *args, **kwargs))

    env = Bounded(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=True)
    for name, apply in list(env.filters.items()):
        env.filters[name] = functools.wraps(apply)(template_bounds.bounded_filter(name, apply))
    return env


def _bounded(tree: nodes.Template) -> nodes.Template:
    """Every loop's items counted as they are taken, every `~` joined within bounds."""
    from jinja2 import nodes
    from jinja2.visitor import NodeTransformer

    def bound(function: str, arg: Any) -> nodes.Call:  # an expression (`For.iter` is typed a Node)
        return nodes.Call(nodes.ImportedName(f"{template_bounds.__name__}.{function}"), [arg], [], None, None)

    class Bound(NodeTransformer):
        def visit_For(self, node: nodes.For) -> nodes.Node:
            self.generic_visit(node)
            node.iter = bound("counted", node.iter)
            return node

        def visit_Concat(self, node: nodes.Concat) -> nodes.Node:
            self.generic_visit(node)
            return bound("concat", nodes.List(node.nodes))

    result: nodes.Template = Bound().visit(tree)
    return result


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

    env = environment()
    try:
        code = env.compile(_bounded(env.parse(text)))
        template: Template = env.template_class.from_code(env, code, env.make_globals(None))
        return template
    except TemplateSyntaxError as exc:
        raise SyntaxProblem(f"template syntax error: {exc.message}") from None
