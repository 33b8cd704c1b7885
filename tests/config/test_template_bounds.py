"""What one template field's rendering may cost (`config/template_bounds.py`), through `templates.render`.

Each runaway template renders in a thread of its own while the test waits, with a deadline, for it
to end: an unbounded one never does, and the test fails instead of holding the suite (rendering is
on the event loop in the hub: such a template held every client).
"""

from __future__ import annotations

import threading
from typing import Any

import pytest

from onemcp.config.model import HubConfig
from onemcp.config.template_bounds import MAX_SIZE, MAX_STEPS
from onemcp.config.templates import TemplateError, render

DEADLINE = 10.0  # for a rendering to end; a bounded one takes milliseconds
CONTEXT: dict[str, Any] = {"project": {"name": "p", "custom": {}}}


def rendered(text: str) -> str | BaseException:
    """What rendering `text` as a field gives (its text, or the exception), once it ended."""
    template = HubConfig.model_validate({"mcpTemplates": {"t": {"command": "srv", "env": {"X": text}}}}).templates["t"]
    outcome: list[str | BaseException] = []
    done = threading.Event()

    def work() -> None:
        try:
            outcome.append(render("t", template, CONTEXT).env["X"])
        except BaseException as exc:  # what escapes is the finding
            outcome.append(exc)
        finally:
            done.set()

    threading.Thread(target=work, daemon=True).start()
    assert done.wait(DEADLINE), f"still rendering after {DEADLINE:g}s: {text}"
    return outcome[0]


def refused(text: str) -> str:
    outcome = rendered(text)
    assert isinstance(outcome, TemplateError), repr(outcome)
    assert str(outcome).startswith("mcpTemplates.t.env.X: ")
    return str(outcome).removeprefix("mcpTemplates.t.env.X: ")


STEPS = f"takes more than {MAX_STEPS} steps (loop iterations, calls, filters)"
TOO_LARGE = f"makes a value of more than {MAX_SIZE} characters"


@pytest.mark.parametrize(
    "text",
    [
        "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",  # silent, forever
        "{% for a in 'x' * 60000 %}{% for b in 'x' * 60000 %}{% endfor %}{% endfor %}",  # over strings
        "{% macro f(n) %}{% if n %}{{ f(n - 1) }}{{ f(n - 1) }}{% endif %}{% endmacro %}{{ f(60) }}",  # 2^60 calls
        # a recursive loop's `loop(items)`: its items were not counted (20 calls of 100,000 here; 10^9 in reach)
        "{% for x in range(20) recursive %}{% if loop.depth == 1 %}{{ loop(range(100000)) }}{% endif %}{% endfor %}",
    ],
    ids=["nested-ranges", "nested-strings", "macro-tree", "recursive-loop"],
)
def test_loops_and_calls_without_end_are_stopped_at_the_step_bound(text: str) -> None:
    assert refused(text) == STEPS


@pytest.mark.parametrize(
    "text",
    [
        "{{ 'a' * 10 ** 9 }}",  # a gigabyte, made before the output was measured
        "{{ ['a'] * 10 ** 9 }}",
        "{% set ns = namespace(s='x') %}{% for i in range(40) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}",
        "{% set ns = namespace(s=['x']) %}{% for i in range(40) %}{% set ns.s = ns.s + ns.s %}{% endfor %}",
        "{% set s = 'x' * 60000 %}{{ s | replace('', s) }}",  # 60000 times 60000
        "{% set s = 'x' * 60000 %}{{ s.replace('', s) }}",
        "{% set s = ['x' * 60000] * 1 %}{{ [s[0], s[0]] | join }}",
        "{{ 'x'.center(10 ** 10) }}",
        "{{ 'x' | center(10 ** 10) }}",
        "{{ range(100000) | list | string }}",
        "{{ '%999999999d' % 1 }}",
        # widths given by arguments: without a check, 2**62 is a MemoryError, 10**8 a 100 MB string made first
        "{{ '%*d' % (2 ** 62, 1) }}",
        "{{ '%-*.*f' | format(2 ** 62, 2, 1) }}",
        "{{ '{:>{}}'.format('a', 2 ** 62) }}",
        "{{ '{:{}}'.format('a', '>4611686018427387904') }}",  # a nested spec given whole, as text: made first
        "{{ '{v:{w}}'.format_map({'v': 'a', 'w': '>4611686018427387904'}) }}",
        # a width split over nested fields, each within the bound: 2**62 (the string was tried, 'too large for
        # memory'), and '{:{}{}}'.format('a', '>9999', '9999') made 100 MB before the size check refused it
        "{{ '{:{}{}{}{}{}}'.format('a', '>4611', '6860', '1842', '7387', '904') }}",
        "{{ '{:>{}{}{}{}{}}'.format('a', 4611, 6860, 1842, 7387, 904) }}",
        "{{ '{0:>{1}{2}{3}{4}{5}}'.format('a', 4611, 6860, 1842, 7387, 904) }}",
        "{{ '{v:>{a}{b}{c}{d}{e}}'.format(v='a', a=4611, b=6860, c=1842, d=7387, e=904) }}",
        "{{ '{v:>{a}{b}{c}{d}{e}}'.format_map({'v': 'a', 'a': 4611, 'b': 6860, 'c': 1842, 'd': 7387, 'e': 904}) }}",
        # a float fills a nested field as its text too: '>9999999999999998.0' (the string was tried)
        "{{ '{:>{}}'.format('a', 9999999999999998.0) }}",
        "{{ '{:>{}{}}'.format('a', 4611, 686018427387.5) }}",
        "{{ '{:>4611686018427387904}'.format(1) }}",  # (999999999 was refused once the 1 GB string was made)
        "{{ lipsum(n=10 ** 7) }}",  # Jinja's global: ten million paragraphs made before they were measured
        "{{ '%.999999999f' | format(1) }}",
        "{{ '{:>999999999}'.format(1) }}",
    ],
    ids=[
        "str-times",
        "list-times",
        "concat-doubling",
        "plus-doubling",
        "replace-filter",
        "replace-method",
        "join",
        "center-method",
        "center-filter",
        "string-of-list",
        "printf-width",
        "printf-star",
        "format-filter-star",
        "format-method-nested",
        "format-method-nested-spec",
        "format-map-nested-spec",
        "format-nested-split-text",
        "format-nested-split-numbers",
        "format-nested-split-numbered",
        "format-nested-split-named",
        "format-map-nested-split",
        "format-nested-float",
        "format-nested-split-float",
        "format-method-huge-width",
        "lipsum",
        "format-filter-precision",
        "format-method-width",
    ],
)
def test_strings_and_lists_past_the_size_bound_are_refused_before_they_are_made(text: str) -> None:
    assert refused(text) == TOO_LARGE


def test_a_power_past_the_bound_is_refused() -> None:
    assert refused("{{ (10 ** 100000) > 1 }}") == "makes a number of more than 65536 bits"


def test_a_macro_that_calls_itself_without_end_is_an_error_of_the_template() -> None:
    """It was a RecursionError out of the hub's request handling."""
    assert refused("{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}") == (
        "recurses too deeply (a macro that calls itself without end?)"
    )


def test_output_past_the_size_bound_stops_as_it_is_produced() -> None:
    assert refused("{% for i in range(9000) %}{{ 'x' * 60 }}{% endfor %}") == (
        f"renders to more than {MAX_SIZE} characters"
    )


def test_measuring_large_lists_again_and_again_is_bounded() -> None:
    """Each size check walks its list's items, and a check is no step: a 30,000-item list added to in a
    loop of 9,000 held the event loop 100 s (here 150 times: seconds, rendered to the end before)."""
    text = "{% set big = range(30000) | list %}{% for i in range(150) %}{% set x = big + [] %}{% endfor %}ok"
    assert refused(text) == "goes through more than 250000 items (a large list added to, or filtered, again and again?)"
    assert rendered("{% set big = range(10000) | list %}{{ (big + []) | join(',') | length }}") == str(
        len(",".join(map(str, range(10000))))
    )


@pytest.mark.parametrize(
    "text",
    [
        "{% for i in range(60) %}{% set x = range(100000) | select('none') | list %}{% endfor %}ok",
        "{% for i in range(200) %}{% set x = range(100000) | max %}{% endfor %}ok",
        "{% for i in range(2000) %}{% set x = range(100000) | sum %}{% endfor %}ok",
        "{% for i in range(20) %}{% set x = 'x' in (range(100000) | map(attribute='real')) %}{% endfor %}ok",
    ],
    ids=["select", "max", "sum", "lazy-map"],
)
def test_filters_going_through_large_inputs_again_and_again_are_bounded(text: str) -> None:
    """A filter is one step whatever it is given: `range(100000) | select(...)` in a loop of 3,000 held the
    event loop 196 s (here fewer times: seconds, rendered to the end before). A lazy result (`map`,
    `select`) is counted as it is taken, by whatever takes it (`in` here)."""
    assert refused(text) == "goes through more than 250000 items (a large list added to, or filtered, again and again?)"
    ok = "{{ [3, 1, 2] | sort | join }}{{ [1, 2] | sum }}{{ range(5) | select('odd') | list }}"
    ok += "{{ [1] | map('string') | first }}"
    assert rendered(ok) == "1233[1, 3]1"


def test_ordinary_templates_render_as_before() -> None:
    nested = (
        "{% for x in [1, [2, [3]], 4] recursive %}{% if x is iterable %}{{ loop(x) }}{% else %}{{ x }}{% endif %}"
        "{% endfor %}"
    )
    assert rendered(nested) == "1234"
    given = "{{ '{:>{}}|'.format('a', 3) }}{{ '%*d|' % (3, 1) }}{{ '%%*d %d|' % 5 }}"
    given += "{{ lipsum(1, False, 2, 3) | length > 0 }}{{ '|{:{}}|{}'.format('a', '>3', 'x 123456789') }}"
    assert rendered(given) == "  a|  1|%*d 5|True|  a|x 123456789"
    # nested fields filled in as `format` does: a width of two (1, 2: 12), another field's text left alone
    split = "{{ '{:>{}{}}|{}|{w:{f}}'.format('a', 1, 2, 'x 123456789', w=7, f='03') }}"
    assert rendered(split) == " " * 11 + "a|x 123456789|007"
    text = (
        "{{ project.x | default('ok') }}-{% for i in range(3) %}{{ loop.index }}{% endfor %}-{{ 'a' ~ 1 ~ 'b' }}-"
        "{{ ['a', 'b'] | join(',') }}-{{ 'x' * 3 }}-{{ 2 ** 10 }}|{{ 'ab' | center(6) }}|{{ 'a\nb' | indent(2) }}|"
        "{{ 'abc' | replace('b', 'xx') }}|{{ project.name.upper() }}|{{ ('x' * 60000) | length }}|"
        "{{ '%-3s|%5.1f' % ('a', 2) }}|{{ '%03d' | format(7) }}|{{ '{:>4}'.format('b') }}"
    )
    assert rendered(text) == "ok-123-a1b-a,b-xxx-1024|  ab  |a\n  b|axxc|P|60000|a  |  2.0|007|   b"
