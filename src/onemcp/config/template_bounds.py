"""What one template field's rendering may cost: steps, the size of what it makes, its output.

Rendering runs on the event loop, for every legacy session's `initialize` and every 2026-07-28
request that names a context, so a template that loops or grows without end would hold every
client. Jinja's sandbox refuses internals and one `range` over 100,000 items, but not loops inside
loops, a macro that calls itself, nor a string or list multiplied, added or joined past memory. Here:

- steps: each loop iteration (a recursive loop's too), call (function, method, macro) and filter counts one; past
  `MAX_STEPS` for one field the rendering stops ("takes more than 10000 steps");
- size: a string or list a template makes (by `*`, `+`, `~`, `**`, a filter or a method) may hold
  `MAX_SIZE` characters (a list: its items' characters), checked before it is made where one
  operation could make a large one (`*`, `+`, `~`, `**`, join, replace, padding), after it otherwise;
- items gone through: the items of the lists measured for those checks, and those a filter goes through
  (`select`, `map`, `sum`, `max`, `sort`, ...: a filter is one step, whatever it is given), count too,
  `MAX_MEASURED` in all: a 30,000-item list added to in a loop of 9,000 steps held the loop 100 s, and
  `range(100000) | select(...)` in a loop of 3,000, 196 s;
- output: counted as it is produced, never past `MAX_SIZE` characters;
- recursion deeper than Python allows is an error like the others, not the hub's.

Does not own the environment (`jinja`) nor the errors' wording with the field's path (`templates`).
"""

from __future__ import annotations

import contextvars
import functools
import re
import string
from collections.abc import Callable, Iterable, Iterator, Sized
from typing import Any

MAX_STEPS = 10_000  # loop iterations, calls and filters in one field's rendering
MAX_SIZE = 64 * 1024  # characters of one rendered field, and of any string or list it makes on the way
MAX_POWER_BITS = 64 * 1024  # an integer power's result
MAX_MEASURED = 250_000  # items gone through by the size checks and filters of one field's rendering (~0.1 s)
_SIZED = (str, list, tuple)
# filters that go through each item of what they are given (at Python's pace for a test or a mapped filter);
# join and list are not here: their results are measured, item by item, as any list (`weight`)
_ITEMWISE = frozenset(
    {"batch", "dictsort", "groupby", "items", "map", "max", "min", "pprint", "reject", "rejectattr", "reverse"}
    | {"select", "selectattr", "slice", "sort", "string", "sum", "tojson", "unique", "urlencode", "xmlattr"}
)
_PLAIN = frozenset({str, int, float, bool, list, tuple, dict, type(None)})  # a filter's result, surely no iterator
_TEXTWISE = frozenset({"pprint", "reverse", "string", "tojson", "urlencode"})  # a string: at C's pace
# str methods and filters whose result may be much larger than what they are given
_PADDING = frozenset({"center", "ljust", "rjust", "zfill"})
_PRINTF_WIDTHS = re.compile(r"%[-+ #0]*(?:\(\w*\))?[-+ #0]*(\d+)(?:\.(\d+))?")  # both groups: flattened below
_FORMAT_WIDTHS = re.compile(r"\{[^{}]*?:[^{}\d]*(\d+)(?:[,_]?\.(\d+))?")
# a width or precision given by an argument: `'%*d' % (w, 1)`, `'{:>{}}'.format('a', w)` (any int argument
# is then taken for one: which one is, the format alone does not say)
_PRINTF_STAR = re.compile(r"%[^%a-zA-Z]*\*")
_FORMAT_NESTED = re.compile(r"\{[^{}]*:[^{}]*\{")
# a text argument that is a whole format spec, given to such a nested field: `'{:{}}'.format('a', '>999999999')`
_FORMATTER = string.Formatter()  # (its `parse` only: the fields of a format, read as `str.format` reads them)
_DIGITS = re.compile(r"\d+")
_SPEC = re.compile(r"(?:.?[<>=^])?[-+ ]?z?#?0?(\d*)[,_]?(?:\.(\d+))?[bcdeEfFgGnosxX%]?", re.DOTALL)


class Overrun(Exception):
    """A rendering went past a bound; the message says which."""


_budget: contextvars.ContextVar[list[int]] = contextvars.ContextVar("template_budget")  # [steps, items] left


def step() -> None:
    """One more step of the rendering under way (none: not rendering, nothing counted)."""
    budget = _budget.get(None)
    if budget is None:
        return
    budget[0] -= 1
    if budget[0] < 0:
        raise Overrun(f"takes more than {MAX_STEPS} steps (loop iterations, calls, filters)")


def _measuring(items: int) -> None:
    """`items` more items about to be gone through by a size check or a filter (charged before: going
    through them is the cost)."""
    budget = _budget.get(None)
    if budget is None:
        return
    budget[1] -= items
    if budget[1] < 0:
        raise Overrun(
            f"goes through more than {MAX_MEASURED} items (a large list added to, or filtered, again and again?)"
        )


def _counting(items: Iterator[Any]) -> Iterator[Any]:
    """A filter's lazy result (`select`, `map`, `reverse`): each item counted as it is taken, wherever."""
    for item in items:
        _measuring(1)
        yield item


def weight(value: Any, depth: int = 0) -> int:
    """Characters a value stands for: a string's length, a list's items' (nested), 1 for anything else."""
    if isinstance(value, str):
        return len(value)
    if isinstance(value, list | tuple) and depth < 8:
        _measuring(len(value))
        total = len(value)
        for item in value:  # (inline for the common items: this walk is the checks' cost)
            if isinstance(item, str):
                total += len(item)
            elif isinstance(item, list | tuple):
                total += weight(item, depth + 1)
            else:
                total += 1
        return total
    return 1


def check_size(size: int, what: str = "a value") -> None:
    if size > MAX_SIZE:
        raise Overrun(f"makes {what} of more than {MAX_SIZE} characters")


def checked(value: Any) -> Any:
    """`value`, once it is known to be within MAX_SIZE (a string or list)."""
    if isinstance(value, _SIZED):
        check_size(weight(value))
    return value


def before_binop(operator: str, left: Any, right: Any) -> None:
    """Refuse `left operator right` when its result would be too large (before it is made)."""
    if operator == "*":
        for seq, times in ((left, right), (right, left)):
            if isinstance(seq, _SIZED) and isinstance(times, int):
                check_size(weight(seq) * max(times, 0))
    elif operator == "+" and isinstance(left, _SIZED) and isinstance(right, _SIZED):
        check_size(weight(left) + weight(right))
    elif operator == "%" and isinstance(left, str):
        check_widths(w for pair in _PRINTF_WIDTHS.findall(left) for w in pair if w)
        if _PRINTF_STAR.search(left):
            _check_given_widths(
                right.values() if isinstance(right, dict) else right if isinstance(right, tuple) else [right]
            )
    elif operator == "**" and _power_bits(left, right) > MAX_POWER_BITS:
        raise Overrun(f"makes a number of more than {MAX_POWER_BITS} bits")


def _power_bits(base: Any, exponent: Any) -> int:
    """About how many bits `base ** exponent` has (0: not an integer power that grows)."""
    if not isinstance(base, int) or not isinstance(exponent, int) or exponent <= 0 or abs(base) <= 1:
        return 0
    return max(abs(base).bit_length() - 1, 1) * exponent


def check_widths(widths: Iterable[str]) -> None:
    """A format's field widths and precisions: each one a string that long (`'%999999999d' % 1`)."""
    for width in widths:
        check_size(int(width) if len(width) < 12 else MAX_SIZE + 1)


def concat(parts: Iterable[Any]) -> str:
    """`a ~ b`: the parts' text joined, refused before it is made when too large."""
    step()
    texts = [part if isinstance(part, str) else str(checked(part)) for part in parts]
    check_size(sum(len(text) for text in texts))
    return "".join(texts)


def counted(items: Any) -> Iterator[Any]:
    """A `{% for %}`'s items, one step each."""
    for item in items:
        step()
        yield item


def before_call(obj: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    """A call about to be made: one step, and refused when a str method would make too large a string."""
    step()
    # (the sandbox hands out `str.format` wrapped, the method as `__wrapped__`: without it, no width was seen)
    owner = getattr(getattr(obj, "__wrapped__", obj), "__self__", None)
    name = getattr(obj, "__name__", "")
    if isinstance(owner, str):
        _before_str_method(owner, name, args, kwargs)
    elif name == "generate_lorem_ipsum":  # Jinja's `lipsum(n, html, min, max)`: n paragraphs of up to max words
        given = dict(zip(("n", "html", "min", "max"), args, strict=False)) | kwargs
        n, most = given.get("n", 5), max(given.get("min", 20), given.get("max", 100))
        if isinstance(n, int) and isinstance(most, int):
            check_size(n * most)


def _check_given_widths(values: Iterable[Any]) -> None:
    """The arguments of a format whose widths or precisions are given by arguments (see `_PRINTF_STAR`)."""
    for value in values:
        if isinstance(value, int) and not isinstance(value, bool):
            check_size(abs(value))
        elif isinstance(value, str) and (spec := _SPEC.fullmatch(value)):
            check_widths(w for w in spec.groups() if w)


def _nested_specs(text: str, args: tuple[Any, ...], named: dict[str, Any]) -> Iterator[list[str]]:
    """The runs of digits in each field's format spec as `text.format(*args, **named)` fills in its nested
    fields: a width may be split over several (`'{:>{}{}}'.format('a', 9999, 9999)`: 99999999), each
    within the bound. A nested field this cannot read as `str.format` does (an attribute, an index, its own
    conversion or spec) counts as all the arguments' text together, the most it could be."""
    try:
        fields = list(_FORMATTER.parse(text))
    except ValueError:
        return  # (`format` says what is wrong with it)
    # (a number fills a field as its text, `format(v, "")`: a float's too, `9999999999999998.0`)
    every = "".join(str(v) for v in (*args, *named.values()) if isinstance(v, str | int | float))
    auto = 0
    for _, field, spec, _ in fields:
        if field is None:
            continue
        if field == "" or field[0] in ".[":  # numbered automatically, as `str.format` does
            auto += 1
        if not spec or "{" not in spec:
            continue
        filled: list[str] = []
        try:
            for literal, inner, inner_spec, conversion in _FORMATTER.parse(spec):
                filled.append(literal)
                if inner is None:
                    continue
                key: int | str = auto if inner == "" else int(inner) if inner.isdigit() else inner
                auto += inner == ""
                value = args[key] if isinstance(key, int) and key < len(args) else named.get(str(key), every)
                plain = not inner_spec and not conversion and isinstance(value, str | int | float)
                filled.append(str(value) if plain else every)
        except ValueError:
            return
        yield _DIGITS.findall("".join(filled))


def _before_str_method(text: str, name: str, args: tuple[Any, ...], kwargs: dict[str, Any] | None = None) -> None:
    if name in ("format", "format_map"):
        check_widths(w for pair in _FORMAT_WIDTHS.findall(text) for w in pair if w)
        if _FORMAT_NESTED.search(text):
            mapping = args[0] if name == "format_map" and args and isinstance(args[0], dict) else {}
            _check_given_widths([*args, *(kwargs or {}).values(), *mapping.values()])
            named = mapping if name == "format_map" else (kwargs or {})
            check_widths(w for spec in _nested_specs(text, () if name == "format_map" else args, named) for w in spec)
    elif name in _PADDING and args and isinstance(args[0], int):
        check_size(args[0])
    elif name == "expandtabs":
        tab = args[0] if args and isinstance(args[0], int) else 8
        check_size(len(text) + text.count("\t") * max(tab, 0))
    elif name == "replace" and len(args) >= 2 and isinstance(args[0], str) and isinstance(args[1], str):
        found = text.count(args[0]) if args[0] else len(text) + 1
        check_size(len(text) + found * max(len(args[1]) - len(args[0]), 0))
    elif name == "join" and args:
        items = list(args[0]) if not isinstance(args[0], _SIZED) else args[0]
        check_size(weight(items) + len(text) * len(items))


def bounded_filter(name: str, apply: Callable[..., Any]) -> Callable[..., Any]:
    """A filter that counts a step, refuses a result too large before it is made where it could be
    (join, replace, padding, indent), and after it is made otherwise."""

    def run(*args: Any, **kwargs: Any) -> Any:
        step()
        values = [a for a in args if not _is_jinja_internal(a)]
        if name == "join" and values:
            items = list(values[0]) if not isinstance(values[0], _SIZED) else values[0]
            sep = values[1] if len(values) > 1 else kwargs.get("d", "")
            check_size(weight(items) + weight(sep) * len(items))
            args = tuple(items if a is values[0] else a for a in args)
        elif name == "replace" and len(values) >= 3:
            _before_str_method(str(values[0]), "replace", tuple(str(v) for v in values[1:3]))
        elif name == "format" and values and isinstance(values[0], str):
            check_widths(w for pair in _PRINTF_WIDTHS.findall(values[0]) for w in pair if w)
            if _PRINTF_STAR.search(values[0]):
                _check_given_widths([*values[1:], *kwargs.values()])
        elif name == "center" and len(values) >= 2 and isinstance(values[1], int):
            check_size(values[1])
        elif name == "indent" and values:
            width = values[1] if len(values) > 1 else kwargs.get("width", 4)
            lines = str(values[0]).count("\n") + 1
            check_size(weight(values[0]) + lines * (width if isinstance(width, int) else len(str(width))))
        if name in _ITEMWISE and values and _gone_through(name, values[0]):
            _measuring(len(values[0]))  # (an iterator given: a filter's lazy result, counted as it is taken)
        result = checked(apply(*args, **kwargs))
        lazy = type(result) not in _PLAIN and isinstance(result, Iterator)  # (the ABC's check is the slow one)
        return _counting(result) if lazy else result

    return run


def _gone_through(name: str, value: Any) -> bool:
    """Are `value`'s items gone through, at Python's pace, by filter `name` (one of `_ITEMWISE`)?"""
    if isinstance(value, str):
        return name not in _TEXTWISE
    return isinstance(value, Sized) and not isinstance(value, Iterator)


def _is_jinja_internal(value: Any) -> bool:
    """The eval context or environment a Jinja filter may be passed first (the environment is a subclass of
    Jinja's, `jinja.environment`'s own)."""
    kind: Any = type(value)  # (a type is hashable; mypy sees type[Any] as not)
    return _jinja_type(kind)


@functools.cache
def _jinja_type(kind: type) -> bool:
    return any(k.__module__.startswith("jinja2.") for k in kind.__mro__)


def render(template: Any, context: Any) -> str:
    """`template` rendered for `context` within the bounds; Overrun says which it went past."""
    token = _budget.set([MAX_STEPS, MAX_MEASURED])
    try:
        out: list[str] = []
        size = 0
        for piece in template.generate(context):
            size += len(piece)
            if size > MAX_SIZE:
                raise Overrun(f"renders to more than {MAX_SIZE} characters")
            out.append(piece)
        return "".join(out)
    except RecursionError:
        raise Overrun("recurses too deeply (a macro that calls itself without end?)") from None
    except MemoryError:
        raise Overrun("makes a value too large for memory") from None
    finally:
        _budget.reset(token)
