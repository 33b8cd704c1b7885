"""A client's template context on the wire: what a project is, and the proof it came from this machine.

Owns the project context of a directory (path, name, git branch/commit/remote read from `.git`
without running git, the environment and custom values of the nearest `.onemcprc`), the
`Onemcp-Context` header that carries it (base64url JSON, bounded), its signature
(`Onemcp-Context-Signature`: HMAC-SHA256 under the hub's secret, `context.key` beside mcp.json,
readable only by its owner), and checking both on the hub's side. Stdlib only: `onemcp run` and
the proxy send it. Does not decide what a verified context may do (`hub.instances`).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import re
import secrets
import time
from pathlib import Path
from typing import Any

HEADER = "onemcp-context"
SIGNATURE_HEADER = "onemcp-context-signature"
SECRET_FILE = "context.key"
MAX_HEADER = 8 * 1024  # bytes of the encoded context
MAX_AGE = 600.0  # seconds a signed context stays good (it carries the time it was made)
RC_NAME = ".onemcprc"


class ContextError(Exception):
    """A context header that cannot be used: malformed, too big, stale, or its signature is wrong."""


# ----------------------------------------------------------------------------- the project
def _git_dir(folder: Path) -> Path | None:
    for candidate in (folder, *folder.parents):
        dot = candidate / ".git"
        if dot.is_dir():
            return dot
        if dot.is_file():  # a worktree or submodule: "gitdir: <path>"
            text = dot.read_text(errors="replace").strip()
            if text.startswith("gitdir:"):
                target = Path(text[7:].strip())
                return target if target.is_absolute() else (candidate / target).resolve()
    return None


# what `git check-ref-format` refuses: controls, space, ~ ^ : ? * [ \, "..", "@{", a leading "-" or
# "." in a component, ".lock" (checked with the rest in `_git`); anything else is a branch git writes
_REF = re.compile(r"^refs/[^\x00-\x20\x7f~^:?*\[\\-][^\x00-\x20\x7f~^:?*\[\\]{0,250}$")
_COMMIT = re.compile(r"^[0-9a-f]{40}([0-9a-f]{24})?$")


def _git(folder: Path) -> dict[str, str]:
    """branch, commit and remote (origin's URL) of the repository `folder` is in; {} when none."""
    git = _git_dir(folder)
    if git is None:
        return {}
    out: dict[str, str] = {}
    try:
        head = (git / "HEAD").read_text().strip()
        if head.startswith("ref:"):
            ref = head[4:].strip()
            if not _REF.match(ref) or any(bad in ref for bad in ("..", "/.", "/-", "@{", ".lock/", "//")):
                return {}  # not a ref git would write: a crafted HEAD (a path out of .git, an option, a new line)
            out["branch"] = ref.removeprefix("refs/heads/")
            common = git / "commondir"
            base = (git / common.read_text().strip()).resolve() if common.is_file() else git
            ref_file = base / ref
            if ref_file.is_file():
                out["commit"] = ref_file.read_text().strip()
            elif (base / "packed-refs").is_file():
                for line in (base / "packed-refs").read_text().splitlines():
                    if line.endswith(" " + ref):
                        out["commit"] = line.split(" ", 1)[0]
        else:
            out["commit"] = head
        config = git / "config"
        if config.is_file():
            section = ""
            for line in config.read_text(errors="replace").splitlines():
                line = line.strip()
                if line.startswith("["):
                    section = line
                elif section == '[remote "origin"]' and line.startswith("url"):
                    out["remote"] = line.split("=", 1)[1].strip()
    except OSError:
        pass
    if not _COMMIT.match(out.get("commit", "")):
        out.pop("commit", None)  # not a commit id (a ref file or packed-refs line that is something else)
    remote = out.get("remote", "")
    if any(not c.isprintable() for c in remote) or remote.startswith("-"):
        out.pop("remote", None)
    return out


def find_rc(start: Path) -> Path | None:
    """The nearest `.onemcprc` in `start` or a parent directory."""
    for folder in (start, *start.parents):
        candidate = folder / RC_NAME
        if candidate.is_file():
            return candidate
    return None


def project(folder: Path) -> dict[str, Any]:
    """The `project.*` context of `folder`: the rc file's directory if there is one, else `folder`."""
    folder = folder.resolve()
    rc = find_rc(folder)
    root = rc.parent if rc is not None else folder
    out: dict[str, Any] = {"path": str(root), "name": root.name}
    git = _git(root)
    if git:
        out["git"] = git
    custom: dict[str, Any] = {}
    if rc is not None:
        try:
            doc = json.loads(rc.read_bytes())
        except (OSError, ValueError):
            doc = {}
        if isinstance(doc, dict):
            if isinstance(doc.get("environment"), str):
                out["environment"] = doc["environment"]
            if isinstance(doc.get("context"), dict):
                custom = {str(k): v for k, v in doc["context"].items() if isinstance(v, (str, int, float, bool))}
    env = os.environ.get("ONEMCP_ENV")
    if env:
        out["environment"] = env
    out.setdefault("environment", "")
    out["custom"] = custom
    return out


# ----------------------------------------------------------------------------- the secret
def secret_path(config_path: Path) -> Path:
    return config_path.parent / SECRET_FILE


def ensure_secret(config_path: Path) -> bytes:
    """The hub's context secret, made (owner-only) on first use."""
    path = secret_path(config_path)
    try:
        return read_secret(path)
    except OSError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{SECRET_FILE}.{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(secrets.token_hex(32) + "\n")
    try:
        os.link(tmp, path)  # never replaces a secret another hub just made
    except FileExistsError:
        pass
    finally:
        tmp.unlink()
    return read_secret(path)


def read_secret(path: Path) -> bytes:
    text = path.read_text().strip()
    if len(text) < 32:
        raise OSError(f"{path}: too short to be a secret")
    return text.encode()


# ----------------------------------------------------------------------------- the header
def encode(context: dict[str, Any], secret: bytes | None, now: float | None = None) -> dict[str, str]:
    """The headers carrying `context` (signed when `secret` is given)."""
    doc = {**context, "iat": int(time.time() if now is None else now)}
    value = base64.urlsafe_b64encode(json.dumps(doc, separators=(",", ":")).encode()).decode().rstrip("=")
    headers = {HEADER: value}
    if secret is not None:
        headers[SIGNATURE_HEADER] = hmac.new(secret, value.encode(), hashlib.sha256).hexdigest()
    return headers


def decode(
    value: str, signature: str | None, secret: bytes | None, now: float | None = None
) -> tuple[dict[str, Any], bool]:
    """(context, signed) of a header; ContextError when it is malformed, or signed but wrongly or long ago."""
    if len(value) > MAX_HEADER:
        raise ContextError(f"the {HEADER} header is larger than {MAX_HEADER} bytes")
    try:
        doc = json.loads(base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)))
    except (ValueError, TypeError):
        raise ContextError(f"the {HEADER} header is not base64url-encoded JSON") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("project", {}), dict):
        raise ContextError(f'the {HEADER} header must be a JSON object like {{"project": {{"path": ...}}}}')
    signed = False
    if signature is not None:
        expected = hmac.new(secret, value.encode(), hashlib.sha256).hexdigest() if secret is not None else ""
        if not expected or not hmac.compare_digest(expected, signature.strip().lower()):
            raise ContextError("the template context's signature does not verify (not signed with this hub's key)")
        age = (time.time() if now is None else now) - float(doc.get("iat", 0) or 0)
        if not -60 <= age <= MAX_AGE:
            raise ContextError(f"the signed template context is stale (made {age:.0f}s ago; at most {MAX_AGE:.0f}s)")
        signed = True
    doc.pop("iat", None)
    return doc, signed


class Signer:
    """A client's context headers: the project of its directory, signed afresh for each request."""

    def __init__(self, context: dict[str, Any], secret: bytes) -> None:
        self.context = context
        self.secret = secret

    def headers(self) -> dict[str, str]:
        return encode(self.context, self.secret)


def local_signer(config_path: Path | None, folder: Path) -> Signer | None:
    """The signer of a local first-party client (proxy, agent CLI) of the hub serving `config_path`:
    None when the hub's key cannot be read (the client then sends no context)."""
    if config_path is None:
        return None
    try:
        secret = read_secret(secret_path(config_path))
    except OSError:
        return None
    return Signer({"project": project(folder)}, secret)
