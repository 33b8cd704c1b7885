"""Reading mcp.json: where it is, ${VAR} substitution, and errors that name the bad field.

Owns: locating the config (flag, ONEMCP_CONFIG, default dir), writing the starter config
when there is none, environment substitution, and turning validation failures into one
`ConfigError` whose message gives the JSON path (``mcpServers.git.url: ...``).
"""

from __future__ import annotations

import difflib
import errno
import os
import re
import sys
import types
import typing
from pathlib import Path
from typing import Any

import orjson
from pydantic import BaseModel, ValidationError

from onemcp.config import compat, formats, schema, values
from onemcp.config.files import atomic_write
from onemcp.config.model import HubConfig
from onemcp.config.paths import config_dir as config_dir  # re-exported: callers import them from here
from onemcp.config.paths import resolve_path as resolve_path

_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
# $$ (first: a literal "$", so a password such as "pa$$word" is written at all), ${NAME}, ${NAME:-default},
# and $NAME (a name must start with a letter or '_': "$1" and "^a$" stay as they are); ${user:NAME} and
# ${user:NAME:-default}, a caller's own value (upstream/user_secrets), are left for the hub; any other "${" is
# a mistake (last alternative), never passed on as written.
_VAR = re.compile(rf"\$\$|\$\{{({_NAME})(?::-([^}}]*))?\}}|\$({_NAME})|(\$\{{user:{_NAME}(?::-[^}}]*)?\}})|\$\{{")
FORMS = (
    "${NAME}, ${NAME:-default} or $NAME (and ${user:NAME}, ${user:NAME:-default} in a server's env and headers;"
    " $$ for a literal $)"
)


class ConfigError(Exception):
    """The config cannot be used; the message says where and why.

    `transient`: the file could not be read for a reason that passes (the process is out of file
    descriptors or memory): reading it again later may well succeed.
    """

    def __init__(self, message: str, *, transient: bool = False, problems: list[str] | None = None) -> None:
        super().__init__(message)
        self.transient = transient
        self.problems = problems if problems is not None else [message]  # each one, for `onemcp validate`


TRANSIENT_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.EAGAIN, errno.EINTR, errno.ENOBUFS})


def starter_config() -> dict[str, Any]:
    """A config that works offline on a fresh machine: the bundled demo and mcp-server-time. Their
    `python -P` does not put the hub's working directory first on the module path: a project's own
    `secrets.py` there would be imported instead of the standard library's."""
    return {
        "$schema": schema.uri(),
        "mcpServers": {
            "demo": {
                "command": sys.executable,
                "args": ["-P", "-m", "onemcp.demo"],
                "tags": ["demo"],
            },
            "time": {
                "command": sys.executable,
                "args": ["-P", "-m", "mcp_server_time", "--local-timezone", "UTC"],
                "tags": ["demo", "time"],
            },
        },
    }


def write_starter(path: Path) -> None:
    """The starter config at `path`: atomically, and owner-only (`files.NEW_FILE_MODE`) as a new config."""
    atomic_write(path, orjson.dumps(starter_config(), option=orjson.OPT_INDENT_2) + b"\n")


def substitute(value: Any, env: dict[str, str], where: str = "", missing: list[str] | None = None) -> Any:
    """Replace ${VAR}, ${VAR:-default} and $VAR in every string of a parsed document, and $$ with $.

    Every variable that is not set (and has no default) is added to `missing` as
    "<path>: environment variable ${NAME} is not set", and so is every "${" that is none of the
    accepted forms (`FORMS`; ${user:NAME} only in a server's env and headers values); without
    `missing`, the first raises.
    """
    found: list[str] = [] if missing is None else missing
    out = _substitute(value, env, tuple(where.split(".")) if where else (), found)
    if missing is None and found:
        raise ConfigError(found[0])
    return out


def _dotted(path: tuple[str | int, ...]) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else f".{part}" if out else str(part)
    return out or "<root>"


def _per_user_field(path: tuple[str | int, ...]) -> bool:
    """Is `path` a value of a server's env or headers, where ${user:NAME} is filled in? (Not a template's:
    its instances are not made per caller, so the placeholder would only ever get its default.)"""
    return len(path) == 4 and path[0] == "mcpServers" and path[2] in ("env", "headers")


def _substitute(value: Any, env: dict[str, str], path: tuple[str | int, ...], missing: list[str]) -> Any:
    if isinstance(value, str):
        where = _dotted(path)
        filled = False  # did a variable (or its default) fill in part of it? Then it may stand for a number

        def repl(m: re.Match[str]) -> str:
            nonlocal filled
            if m.group(0) == "$$":  # an escaped "$", never the start of a variable
                return "$"
            if m.group(4) is not None:  # ${user:NAME}: the hub fills it in per caller
                if not _per_user_field(path):
                    missing.append(
                        f"{where}: {m.group(0)} is a caller's own value and works only in a server's"
                        " env and headers values"
                    )
                return m.group(0)
            name = m.group(1) or m.group(3)
            if name is None:  # "${" of no accepted form
                end = value.find("}", m.start())
                written = value[m.start() : end + 1 if end != -1 else len(value)]
                written = written if len(written) <= 40 else written[:40] + "..."
                missing.append(f"{where}: {written!r} is not a variable reference; write {FORMS}")
                return m.group(0)
            default = m.group(2)
            if default is not None and "${" in default:
                missing.append(f"{where}: the default of ${{{name}:-...}} cannot hold another ${{...}}; write {FORMS}")
                return m.group(0)
            if name in env:
                filled = True
                return env[name]
            if default is not None:
                filled = True
                return default.replace("$$", "$")  # taken as written, but for the escape that works everywhere
            missing.append(f"{where}: environment variable ${{{name}}} is not set")
            return m.group(0)

        out = _VAR.sub(repl, value)
        return values.FromEnv(out) if filled else out
    if isinstance(value, dict):
        return {k: _substitute(v, env, (*path, str(k)), missing) for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute(v, env, (*path, i), missing) for i, v in enumerate(value)]
    return value


def parse_config(raw: bytes, *, source: str, env: dict[str, str] | None = None, fmt: str = "json") -> HubConfig:
    """The config in `raw` (JSON/JSONC, YAML or TOML), validated; ConfigError lists every problem."""
    try:
        doc = formats.parse(raw, fmt)
    except (formats.FormatError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{source}: {exc}", problems=[str(exc)]) from None
    except RecursionError:
        raise ConfigError(f"{source}: {DEEP}", problems=[DEEP]) from None
    if doc is None and fmt != "json":
        doc = {}  # an empty YAML file
    if not isinstance(doc, dict):
        raise ConfigError(
            f"{source}: the top level must be an object (a mapping)", problems=["the top level must be an object"]
        )
    shape = _shape_problem(doc)
    if shape is not None:
        raise ConfigError(f"{source}: {shape}", problems=[shape])
    for key in compat.FOREIGN_TOP_KEYS:
        doc.pop(key, None)
    env = dict(os.environ) if env is None else env
    problems: list[str] = []
    problems += compat.normalise(doc, lambda value, where: substitute(value, env, where, problems))
    from_env = _url_variables(doc, env)
    doc = substitute(doc, env, missing=problems)
    config: HubConfig | None = None
    try:
        config = HubConfig.model_validate(doc)
    except ValidationError as exc:
        problems += describe(exc)
    except RecursionError:  # a template expression nested past what its parser can follow
        problems.append("a template expression is nested too deeply")
    if problems or config is None:
        problems = list(dict.fromkeys(problems))  # (a ${VAR} compat filled in early is missed only once)
        raise ConfigError(f"{source}: {'; '.join(problems)}", problems=problems)
    config.keep_url_secrets(from_env)
    return config


def _url_variables(doc: dict[str, Any], env: dict[str, str]) -> frozenset[str]:
    """What the environment's ${VAR}s bring into servers' and templates' URLs (`url`, `replicas`)."""
    found: set[str] = set()
    for section in ("mcpServers", "mcpTemplates"):
        entries = doc.get(section)
        for entry in entries.values() if isinstance(entries, dict) else ():
            if not isinstance(entry, dict):
                continue
            replicas = entry.get("replicas")
            for url in [entry.get("url"), *(replicas if isinstance(replicas, list) else ())]:
                for match in _VAR.finditer(url) if isinstance(url, str) else ():
                    value = env.get(match.group(1) or match.group(3) or "")
                    if value:
                        found.add(value)
    return frozenset(found)


DEEP = "nested too deeply (a config is at most 64 levels deep)"
MAX_DEPTH = 64
MAX_VALUES = 200_000  # a YAML file's aliases can make a few hundred bytes into billions of values


def _shape_problem(doc: dict[str, Any]) -> str | None:
    """Why a parsed document cannot be a config before anything walks it recursively: nested deeper
    than MAX_DEPTH, or more than MAX_VALUES values once its YAML aliases are followed."""
    stack: list[tuple[Any, int]] = [(doc, 1)]
    seen = 0
    while stack:
        node, depth = stack.pop()
        seen += 1
        if seen > MAX_VALUES:
            return f"more than {MAX_VALUES:,} values (YAML aliases that repeat each other?)"
        if depth > MAX_DEPTH:
            return DEEP
        if isinstance(node, dict):
            stack.extend((value, depth + 1) for value in node.values())
        elif isinstance(node, list):
            stack.extend((value, depth + 1) for value in node)
    return None


def environment(path: Path) -> dict[str, str]:
    """The variables a config sees: the process's, over those of a `.env` file beside the config. A `.env`
    that is there but cannot be read is a ConfigError naming it: ignored, each of its variables was reported
    as not set (a file saved as UTF-16, a folder of that name). So is a line that is not `NAME=value`
    (blank lines and `#` comments aside; `export NAME=value` and a value in matching quotes are taken):
    skipped, it left a variable unset or a secret misread, unsaid. At start the hub refuses to run; on a
    live reload the running config stays, as for any config error."""
    env: dict[str, str] = {}
    dotenv = path.parent / ".env"
    try:
        text = dotenv.read_text(encoding="utf-8")
    except FileNotFoundError:
        text = ""
    except OSError as exc:
        raise ConfigError(f"{dotenv}: cannot read: {exc.strerror}", transient=exc.errno in TRANSIENT_ERRNOS) from None
    except UnicodeDecodeError:
        raise ConfigError(f"{dotenv}: not UTF-8 text (save it as UTF-8)") from None
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, equals, value = line.removeprefix("export ").partition("=")
        key, value = key.strip(), value.strip()
        problem = _dotenv_problem(key, equals, value)
        if problem is not None:  # skipped, its variable was "not set", or set to what it was not meant to be
            raise ConfigError(f"{dotenv}, line {number}: {problem}; write NAME=value")  # (the line: maybe a secret)
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        env[key] = value
    return env | dict(os.environ)


def _dotenv_problem(key: str, equals: str, value: str) -> str | None:
    """Why a `.env` line is not NAME=value (None: it is one)."""
    if not equals:
        return "not NAME=value"
    if not re.fullmatch(_NAME, key):
        return f"{_escaped(key[:40])!r} is not a variable name" if key else "no variable name before '='"
    if value[:1] in ("'", '"') and (len(value) < 2 or value[-1] != value[0]):
        return "a quote that is not closed on its line"
    return None


def _escaped(text: str) -> str:
    """`text` with control characters as escapes, for a message (a `.env` line may hold anything)."""
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode() for c in text)


def load_config(path: Path) -> HubConfig:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}", transient=exc.errno in TRANSIENT_ERRNOS) from None
    config = parse_config(raw, source=str(path), env=environment(path), fmt=formats.format_of(path))
    relative = {}  # paths in the file are relative to the file, not to where the hub was started
    if config.hub.audit == "":
        raise ConfigError(
            f'{path}: onemcp.audit: empty; a file path (beside mcp.json when relative), or "-" for the log'
        )
    for field, key in (("instructions_file", "instructionsFile"), ("search_cache", "searchCache"), ("audit", "audit")):
        value = getattr(config.hub, field)
        if not isinstance(value, str) or not value or value == "-":
            continue
        try:
            expanded = Path(value).expanduser()
            if "\0" in value:
                raise ValueError("a path cannot hold a NUL character")
        except (RuntimeError, ValueError) as exc:  # ~user that does not exist, no home directory
            raise ConfigError(f"{path}: onemcp.{key}: cannot use {value[:200]!r}: {exc}") from None
        relative[field] = str(expanded if expanded.is_absolute() else path.parent / expanded)  # ~ expanded too
    if relative:
        config = config.model_copy(update={"hub": config.hub.model_copy(update=relative)})
    if config.hub.instructions_file:
        _check_instructions_file(path, Path(config.hub.instructions_file).expanduser())
    return config


def _check_instructions_file(path: Path, template: Path) -> None:
    """The instructions template must read and name only the hub's fields (it is read again at each render)."""
    try:
        problem = values.template_problem(template.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        problem = f"cannot read {template}: {getattr(exc, 'strerror', None) or exc}"
    if problem:
        raise ConfigError(f"{path}: onemcp.instructionsFile: {problem}")


# a ${VAR}'s text that does not read as the number or boolean its field takes, by pydantic's error type
PARSED_AS = {"float_parsing": "a number", "int_parsing": "a whole number", "bool_parsing": "true or false"}


# a value of another kind than its field's, by pydantic's error type: what the field takes
EXPECTED = {
    "string_type": "a string",
    "list_type": "a list",
    "dict_type": "an object",
    "model_type": "an object",
    "model_attributes_type": "an object",
}


# a server's fields whose values are secrets (`redact.Redactor.use` masks them once the config runs): a
# refused config's error never repeats what is given there, since it is shown (/health's config.lastError)
# where the redactor cannot know it
SECRET_FIELDS = frozenset({"env", "headers"})
SECRET_OAUTH_FIELDS = frozenset({"clientSecret", "privateKey"})


def holds_secret(loc: tuple[str | int, ...]) -> bool:
    """Is `loc` (the user's path) in a server's or template's env, headers or OAuth client secret?"""
    if len(loc) < 3 or loc[0] not in ("mcpServers", "mcpTemplates"):
        return False
    return loc[2] in SECRET_FIELDS or (loc[2] == "oauth" and len(loc) > 3 and loc[3] in SECRET_OAUTH_FIELDS)


def _expected(kind: str, value: Any, *, secret: bool = False) -> str:
    """ "expected a list, not the string 'dev': write ["dev"]", in the words of JSON, not pydantic's
    ("Input should be a valid dictionary or instance of ServerConfig"). `secret`: the value is not repeated."""
    if secret:
        given = "a string" if isinstance(value, str) else _given_kind(value)
        hint = ": write it in quotes" if kind == "string_type" and isinstance(value, int | float) else ""
        return f"expected {EXPECTED[kind]}, not {given}{hint} (not shown: it holds secrets)"
    if isinstance(value, str):
        given = f"the string {value if len(value) <= 40 else value[:40] + '...'!r}"
    elif isinstance(value, bool) or value is None:
        given = orjson.dumps(value).decode()
    elif isinstance(value, int | float):
        given = f"the number {value!r}"
    else:
        given = "a list" if isinstance(value, list | tuple) else "an object" if isinstance(value, dict) else "that"
    hint = ""
    if kind == "list_type" and isinstance(value, str):
        one = value and not any(c.isspace() or c == "," for c in value)  # else: which items it holds is a guess
        hint = f": write {orjson.dumps([value]).decode()}" if one else ': write ["...", "..."], one string per item'
    elif kind == "string_type" and isinstance(value, int | float) and not isinstance(value, bool):
        hint = f": write {orjson.dumps(str(value)).decode()}"
    return f"expected {EXPECTED[kind]}, not {given}{hint}"


def _given_kind(value: Any) -> str:
    """What kind of JSON value `value` is, in words that do not repeat it (true, false and null do)."""
    if isinstance(value, bool) or value is None:
        return orjson.dumps(value).decode()
    if isinstance(value, int | float):
        return "a number"
    return "a list" if isinstance(value, list | tuple) else "an object" if isinstance(value, dict) else "that"


def describe(exc: ValidationError) -> list[str]:
    """Each validation error as "<path>: <message>"; an unknown key with the likely intended one.

    The path is the user's: pydantic's names for the alternatives of a field that takes several
    kinds (`bool`, `str`, `function-after[...]`, `literal[...]`) are dropped. Of such a field's
    alternatives only the one the value got into is reported (an object's unknown key, not
    "should be a valid boolean"); when it got into none, one "expected X or Y" says what fits.
    """
    parts: list[str] = []
    errors = exc.errors()
    cleaned = [_user_loc(err["loc"]) for err in errors]
    unions: dict[tuple[str | int, ...], list[int]] = {}  # a field of several kinds -> its errors
    for i, (_, union) in enumerate(cleaned):
        if union is not None:
            unions.setdefault(union[0], []).append(i)
    skip: set[int] = set()
    summary: dict[int, str] = {}  # the first error of a union none of whose kinds fit -> "expected ..."
    for indexes in unions.values():
        inside = [i for i in indexes if not _wrong_kind(errors[i], cleaned[i][1])]
        if inside:
            skip.update(i for i in indexes if i not in inside)
        else:
            branches = [union[1] for i in indexes if (union := cleaned[i][1]) is not None]
            kinds = list(dict.fromkeys(_kind_name(b) for b in branches))
            summary[indexes[0]] = "expected " + ", or ".join(k for k in kinds if k)
            skip.update(indexes[1:])
    for i, err in enumerate(errors):
        if i in skip:
            continue
        loc_parts = cleaned[i][0]
        loc = ".".join(_shown(p) for p in loc_parts)
        msg = summary.get(i) or err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = unknown_key(loc_parts)
        elif err["type"] in PARSED_AS and isinstance(err.get("input"), values.FromEnv):
            msg = f"expected {PARSED_AS[err['type']]}, not {str(err['input'])!r} (what its ${{VAR}} gave)"
        elif err["type"] in EXPECTED and i not in summary:
            msg = _expected(err["type"], err.get("input"), secret=holds_secret(loc_parts))
        parts.append(f"{loc}: {msg}" if loc else msg)
    return parts


# Where pydantic's loc names the alternative of a union: (the field's path, the alternative's
# annotation, the position of its name in the loc).
_Union = tuple[tuple[str | int, ...], Any, int]


def _user_loc(loc: tuple[str | int, ...]) -> tuple[tuple[str | int, ...], _Union | None]:
    """`loc` without pydantic's alternative names, and the first union it went through (None: none)."""
    out: list[str | int] = []
    union: _Union | None = None
    model: Any = HubConfig
    for position, part in enumerate(loc):
        model = _unwrap(model)
        args = [a for a in typing.get_args(model) if a is not type(None)]
        if typing.get_origin(model) in (typing.Union, types.UnionType) and len(args) > 1:
            branch = next((a for a in args if _is_kind(a, str(part))), None)
            if branch is not None:  # `part` names the alternative: not the user's
                if union is None:
                    union = (tuple(out), branch, position)
                model = branch
                continue
        out.append(part)
        if isinstance(model, type) and issubclass(model, BaseModel):
            field = next((f for n, f in model.model_fields.items() if part in (n, f.alias)), None)
            model = field.annotation if field is not None else Any
        elif typing.get_origin(model) in (dict, list) and typing.get_args(model):
            model = typing.get_args(model)[-1]
        else:
            model = Any
    return tuple(out), union


def _unwrap(annotation: Any) -> Any:
    """`X` of `Annotated[X, ...]` and of `X | None`."""
    while True:
        if typing.get_origin(annotation) is typing.Annotated:
            annotation = typing.get_args(annotation)[0]
            continue
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if typing.get_origin(annotation) in (typing.Union, types.UnionType) and len(args) == 1:
            annotation = args[0]
            continue
        return annotation


def _is_kind(annotation: Any, tag: str) -> bool:
    """Is `tag` pydantic's name for the alternative `annotation` of a union?"""
    annotation = _unwrap(annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return tag == annotation.__name__ or tag.endswith((f", {annotation.__name__}]", f"[{annotation.__name__}]"))
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        return tag.startswith("literal[")
    if origin is not None:
        return tag.startswith(f"{getattr(origin, '__name__', origin)}[")
    return isinstance(annotation, type) and tag == annotation.__name__


def _wrong_kind(err: Any, union: _Union | None) -> bool:
    """Did this alternative of a union refuse the value for being of another kind altogether?"""
    kind = str(err["type"])
    at_field = union is not None and len(err["loc"]) == union[2] + 1
    return at_field and (kind.endswith(("_type", "_parsing")) or kind == "literal_error")


def _kind_name(annotation: Any) -> str:
    """The alternative `annotation` of a union in the user's words."""
    annotation = _unwrap(annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "an object"
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        return " or ".join(orjson.dumps(v).decode() for v in typing.get_args(annotation))
    if origin is list:
        return "a list"
    if origin is dict:
        return "an object"
    names = {bool: "true or false", str: "a string", int: "a whole number", float: "a number"}
    return names.get(annotation, str(annotation))


def _shown(part: str | int) -> str:
    """A key of the path to an error, as printed: one holding a control or format character (a server
    named with terminal codes) is escaped as `repr` escapes it, as the key in the message is."""
    text = str(part)
    return text if text.isprintable() else repr(text)[1:-1]


def unknown_key(loc: tuple[str | int, ...]) -> str:
    """The message for a key the model does not have: what it might have meant, else what there is."""
    known = keys_at(loc[:-1])
    key = str(loc[-1])
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6) or [k for k in known if k.lower() == key.lower()]
    if close:
        return f"unknown key {key!r}; did you mean {close[0]!r}?"
    return f"unknown key {key!r} (known here: {', '.join(sorted(known))})"


def keys_at(loc: tuple[str | int, ...]) -> list[str]:
    """The keys the config model accepts at `loc` (a path into the document)."""
    model: Any = HubConfig
    rest = list(loc)
    while rest:
        part = rest.pop(0)
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            return []
        field = next((f for n, f in model.model_fields.items() if part in (n, f.alias)), None)
        if field is None:
            return []
        model = _inner(field.annotation)
        origin = typing.get_origin(model)
        if origin is dict and rest:
            rest.pop(0)  # the entry's name
            model = _inner(typing.get_args(model)[1])
        elif origin is list and rest:
            rest.pop(0)
            model = _inner(typing.get_args(model)[0])
    if not (isinstance(model, type) and issubclass(model, BaseModel)):
        return []
    return [f.alias or n for n, f in model.model_fields.items()]


def _inner(annotation: Any) -> Any:
    """The model in `X | None` (or the annotation itself)."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType) and args:
        models = [a for a in args if isinstance(a, type) and issubclass(a, BaseModel)]
        return models[0] if models else args[0]
    return annotation
