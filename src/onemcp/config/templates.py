"""Rendering an `mcpTemplates` entry for one context: a `ServerConfig`, or an error naming the field.

Owns turning (template, context) into the server config an instance runs, and the hash that
names the instance: two contexts that render the same config share it. Only the fields in
`ServerTemplate.RENDERED` are rendered, each string on its own (argv stays a list: no shell is
ever involved, and a value with spaces stays one argument). Does not decide who may render
(`auth.context`) nor run anything (`hub.instances`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

import orjson
from pydantic import ValidationError

from onemcp.config import jinja, template_bounds
from onemcp.config.model import ServerConfig, ServerTemplate


class TemplateError(Exception):
    """A template cannot be rendered for a context; the message starts with the field's path."""


def _render(name: str, path: str, text: str, context: Mapping[str, Any]) -> str:
    if not jinja.is_template(text):
        return text
    try:
        out = template_bounds.render(jinja.compiled(text), context)
    except (jinja.SyntaxProblem, template_bounds.Overrun) as exc:
        raise TemplateError(f"mcpTemplates.{name}.{path}: {exc}") from None
    except jinja.render_errors() as exc:  # undefined names, sandbox refusals
        message = getattr(exc, "message", None)
        raise TemplateError(f"mcpTemplates.{name}.{path}: {message or type(exc).__name__}") from None
    except (ArithmeticError, TypeError, ValueError) as exc:
        raise TemplateError(f"mcpTemplates.{name}.{path}: {exc}") from None
    except LookupError as exc:  # a format naming no argument: '{}'.format(), '%(a)s' % {} (was a 500)
        said = f"no value named {exc} to format with" if isinstance(exc, KeyError) else str(exc)
        raise TemplateError(f"mcpTemplates.{name}.{path}: {said}") from None
    return out


TRUE, FALSE = ("true", "1", "yes", "on"), ("", "false", "0", "no", "off", "none")


def _truthy(name: str, text: str) -> bool:
    """A rendered `disabled`: a boolean word, else TemplateError (an unknown word never disables unsaid)."""
    word = text.strip().lower()
    if word not in TRUE + FALSE:
        raise TemplateError(f"mcpTemplates.{name}.disabled: rendered {text[:80]!r}, expected true or false")
    return word in TRUE


def render(name: str, template: ServerTemplate, context: Mapping[str, Any]) -> ServerConfig:
    """The server config `template` renders to for `context`; TemplateError names the field that failed."""
    doc: dict[str, Any] = template.model_dump(exclude={"template", *ServerTemplate.RENDERED})
    for field in ServerTemplate.RENDERED:
        value = getattr(template, field)
        if isinstance(value, str):
            doc[field] = _render(name, field, value, context)
        elif isinstance(value, list):
            doc[field] = [_render(name, f"{field}[{i}]", v, context) for i, v in enumerate(value)]
        elif isinstance(value, dict):
            doc[field] = {k: _render(name, f"{field}.{k}", v, context) for k, v in value.items()}
        else:
            doc[field] = value
    if isinstance(doc["disabled"], str):
        doc["disabled"] = _truthy(name, doc["disabled"])
    doc["tags"] = [t for t in doc["tags"] if t.strip()]  # a tag that renders empty is no tag
    doc["args"] = list(doc["args"])
    try:
        return ServerConfig.model_validate(doc)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        message = first["msg"].removeprefix("Value error, ")
        raise TemplateError(f"mcpTemplates.{name}{'.' + where if where else ''}: rendered, {message}") from None


def rendered_tags(name: str, template: ServerTemplate, context: Mapping[str, Any]) -> list[str]:
    """Its tags alone, as `render` renders them (who may start an instance is decided on them, before the
    rest is rendered); TemplateError as `render`'s."""
    tags = [_render(name, f"tags[{i}]", tag, context) for i, tag in enumerate(template.tags)]
    return [t for t in tags if t.strip()]


def digest(config: ServerConfig) -> str:
    """The rendered config's hash: the instance's identity (same hash, same instance when shareable)."""
    dumped = orjson.dumps(config.model_dump(mode="json"), option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(dumped).hexdigest()
