"""Rendering `mcpTemplates` entries: fields rendered one by one, argv kept a list, errors naming the field."""

from __future__ import annotations

from typing import Any

import pytest

from onemcp.config.load import ConfigError, parse_config
from onemcp.config.model import HubConfig, ServerTemplate
from onemcp.config.templates import TemplateError, digest, render

CONTEXT: dict[str, Any] = {
    "project": {"path": "/work/my project", "name": "my project", "environment": "dev", "custom": {"db": "orders"}},
    "client": {"name": "claude", "version": "1", "title": ""},
    "session": {"id": "s1"},
}


def template(**fields: Any) -> ServerTemplate:
    return HubConfig.model_validate({"mcpTemplates": {"t": {"command": "srv", **fields}}}).templates["t"]


def test_each_field_renders_and_argv_stays_a_list() -> None:
    t = template(
        args=["--root", "{{ project.path }}", "--db={{ project.custom.db }}"],
        env={"CLIENT": "{{ client.name }}"},
        cwd="{{ project.path }}",
        tags=["{{ project.environment }}", "{{ '' }}"],
        timeout=12,
    )
    config = render("t", t, CONTEXT)
    assert config.args == ["--root", "/work/my project", "--db=orders"]  # a space is no split: no shell
    assert config.env == {"CLIENT": "claude"}
    assert config.cwd == "/work/my project"
    assert config.tags == ["dev"]  # a tag that renders empty is dropped
    assert config.timeout == 12  # fields that are not rendered are taken as written


def test_disabled_may_be_decided_by_the_context() -> None:
    t = template(disabled="{{ project.environment == 'prod' }}")
    assert render("t", t, CONTEXT).disabled is False
    assert render("t", t, {**CONTEXT, "project": {**CONTEXT["project"], "environment": "prod"}}).disabled is True


def test_disabled_is_a_boolean_or_renders_one() -> None:
    """A plain word ("fasle") would have disabled the template without a word: refused at load; a
    template that renders something other than a boolean word is an error naming the field."""
    with pytest.raises(ConfigError, match="disabled: expected true or false"):
        parse_config(b'{"mcpTemplates": {"t": {"command": "srv", "disabled": "fasle"}}}', source="mcp.json")
    toggled = b'{"mcpTemplates": {"t": {"command": "srv", "disabled": "${OFF}"}}}'  # an env-driven switch
    assert parse_config(toggled, source="mcp.json", env={"OFF": "false"}).templates["t"].disabled is False
    assert parse_config(toggled, source="mcp.json", env={"OFF": "true"}).templates["t"].disabled is True
    with pytest.raises(TemplateError, match=r"t\.disabled: rendered 'dev', expected true or false"):
        render("t", template(disabled="{{ project.environment }}"), CONTEXT)


def test_a_missing_value_names_the_field() -> None:
    t = template(args=["a", "{{ project.custom.missing }}"])
    with pytest.raises(TemplateError, match=r"mcpTemplates\.t\.args\[1\]: .*missing"):
        render("t", t, CONTEXT)


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ("{{ '{}'.format() }}", "tuple index out of range"),
        ("{{ '{a}'.format() }}", "no value named 'a' to format with"),
        ("{{ '%(a)s' % {} }}", "no value named 'a' to format with"),
    ],
)
def test_a_format_naming_no_argument_names_the_field(text: str, said: str) -> None:
    """An IndexError or KeyError of the template's own format: a render error (it was a 500 at initialize)."""
    with pytest.raises(TemplateError) as caught:
        render("t", template(env={"X": text}), CONTEXT)
    assert str(caught.value) == f"mcpTemplates.t.env.X: {said}"


def test_the_sandbox_refuses_internals() -> None:
    t = template(env={"X": "{{ project.path.__class__.__mro__ }}"})
    with pytest.raises(TemplateError, match=r"mcpTemplates\.t\.env\.X: .*unsafe"):
        render("t", t, CONTEXT)


def test_a_url_renders_too() -> None:
    t = template(
        url="http://{{ project.custom.db }}.internal/mcp", command=None, headers={"X-Db": "{{ project.custom.db }}"}
    )
    config = render("t", t, CONTEXT)
    assert config.url == "http://orders.internal/mcp" and config.headers == {"X-Db": "orders"}
    with pytest.raises(ConfigError, match="must start with http"):  # checked as written, before rendering
        parse_config(b'{"mcpTemplates": {"t": {"url": "{{ project.custom.url }}"}}}', source="m")


def test_the_same_rendering_has_the_same_digest() -> None:
    t = template(args=["{{ project.path }}"])
    assert digest(render("t", t, CONTEXT)) == digest(render("t", t, dict(CONTEXT)))
    other = {**CONTEXT, "project": {**CONTEXT["project"], "path": "/elsewhere"}}
    assert digest(render("t", t, CONTEXT)) != digest(render("t", t, other))


def test_handlebars_is_refused_with_the_jinja_spelling() -> None:
    with pytest.raises(ConfigError, match=r"mcpTemplates\.t\.args\[0\]: this looks like a Handlebars template.*endif"):
        parse_config(b'{"mcpTemplates": {"t": {"command": "x", "args": ["{{#if project.git}}y{{/if}}"]}}}', source="m")
    # the plain form is the same in both: accepted
    parse_config(b'{"mcpTemplates": {"t": {"command": "x", "args": ["{{project.path}}"]}}}', source="m")


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        (
            b'{"mcpTemplates": {"t": {"command": "x", "args": ["{{ a"]}}}',
            r"mcpTemplates\.t\.args\[0\]: template syntax",
        ),
        (b'{"mcpServers": {"t": {"command": "x"}}, "mcpTemplates": {"t": {"command": "x"}}}', "also a server"),
        (b'{"mcpTemplates": {"a@b": {"command": "x"}}}', "may contain only"),
        (b'{"mcpTemplates": {"t": {"command": "x", "template": {"maxInstances": 0}}}}', "maxInstances"),
    ],
)
def test_bad_templates_are_refused_at_load(doc: bytes, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_config(doc, source="m")


def test_a_template_tag_or_url_is_checked_once_rendered() -> None:
    config = parse_config(
        b'{"mcpTemplates": {"t": {"url": "https://{{ project.name }}/mcp", "tags": ["{{ project.name }}"]}}}',
        source="mcp.json",
        env={},
    )
    with pytest.raises(TemplateError, match=r"mcpTemplates\.t\.url: rendered, does not parse"):
        render("t", config.templates["t"], CONTEXT)  # "my project" has a space
    tagged = template(tags=["{{ project.name }}"])
    with pytest.raises(TemplateError, match=r"mcpTemplates\.t\.tags: rendered, no filter could name 'my project'"):
        render("t", tagged, CONTEXT)
    assert render("t", template(tags=["{{ project.environment }}"]), CONTEXT).tags == ["dev"]
