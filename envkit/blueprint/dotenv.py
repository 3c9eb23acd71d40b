"""Variables for ``${VAR}`` from env files, as Docker Compose reads them.

Which files (Compose's rules, docs.docker.com/compose/how-tos/environment-variables/):

- with ``--env-file FILE`` (repeatable): those files, in order, a later one overriding an earlier one;
  the ``.env`` beside the blueprint is then **not** read (as in Compose, where ``--env-file`` replaces it);
- without: the ``.env`` beside the blueprint, when there is one;
- the process environment wins over every file.

The format (Compose's): ``KEY=value`` lines; blank lines and ``#`` comments; an optional ``export``
before the key; ``'single quotes'`` keep the value as written; ``"double quotes"`` read ``\\n \\t \\\\
\\"`` escapes; both may span lines; an unquoted value ends at a `` #`` comment and loses surrounding
blanks. ``${VAR}`` (and its ``:-`` ``-`` ``:?`` ``?`` ``:+`` forms) in unquoted and double-quoted values
is replaced from the process environment, then from what the files set before it. A ``KEY`` line
without ``=`` takes the value from the process environment (and is skipped when that has none).
"""

from __future__ import annotations

import re
from collections import ChainMap
from collections.abc import Mapping, Sequence
from pathlib import Path

from envkit.blueprint.interpolate import interpolate
from envkit.blueprint.source import Marks
from envkit.errors import BlueprintError, Problem

__all__ = ["DEFAULT_NAME", "parse", "variables"]

DEFAULT_NAME = ".env"
MAX_BYTES = 1024 * 1024
_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]*")
_ESCAPES = {"n": "\n", "r": "\r", "t": "\t", "\\": "\\", '"': '"', "$": "$$"}  # "$$": stays a literal "$"


def variables(env: Mapping[str, str], files: Sequence[str | Path] | None, directory: Path | None) -> dict[str, str]:
    """What ``${VAR}`` reads: the process environment ``env`` over the env ``files`` (None: the
    ``.env`` in ``directory``, if any). Raises BlueprintError naming file and line."""
    if files is None:
        default = directory / DEFAULT_NAME if directory is not None else None
        chosen: list[Path] = [default] if default is not None and default.is_file() else []
    else:
        chosen = [Path(f) for f in files]
    found: dict[str, str] = {}
    problems: list[Problem] = []
    for file in chosen:
        found.update(parse(_read(file), str(file), env, found, problems))
    if problems:
        raise BlueprintError(problems, "env file")
    return {**found, **env}


def _read(file: Path) -> str:
    try:
        if file.is_dir():
            raise BlueprintError([Problem(str(file), 0, 0, "", "env file is a folder, not a file")], "env file")
        size = file.stat().st_size
        if size > MAX_BYTES:
            raise BlueprintError([Problem(str(file), 0, 0, "", f"env file is {size // 1024} KiB; at most 1 MiB")], "env file")
        return file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise BlueprintError([Problem(str(file), 0, 0, "", "env file not found")], "env file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise BlueprintError([Problem(str(file), 0, 0, "", f"cannot read env file: {exc}")], "env file") from exc


def parse(text: str, file: str, env: Mapping[str, str], earlier: Mapping[str, str],
          problems: list[Problem]) -> dict[str, str]:
    """The variables one env file sets. ``${VAR}`` reads ``env`` (the process environment), then what
    this file set above, then ``earlier`` (what earlier files set); problems are appended with their line."""
    out: dict[str, str] = {}
    scope: ChainMap[str, str] = ChainMap(env, out, earlier)  # type: ignore[arg-type]
    lines = text.replace("\r\n", "\n").split("\n")
    i = 0
    while i < len(lines):
        number, line = i + 1, lines[i]
        i += 1
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        body = stripped[len("export"):].lstrip() if re.match(r"export\s", stripped) else stripped
        key_match = _KEY.match(body)
        if not key_match:
            problems.append(Problem(file, number, 1, "", f"expected KEY=value, got {stripped[:40]!r}"))
            continue
        key, rest = key_match.group(0), body[key_match.end():].lstrip(" \t")
        if not rest or rest.startswith("#"):
            if key in env:  # "KEY" alone: the process environment's value
                out[key] = env[key]
            continue
        if not rest.startswith("="):
            problems.append(Problem(file, number, 1, key, f"expected '=' after {key}, got {rest[:20]!r}"))
            continue
        raw = rest[1:].lstrip(" \t")
        if raw[:1] in ("'", '"'):
            quote = raw[0]
            value, after, used = _quoted(raw[1:], quote, lines, i)
            if value is None:
                problems.append(Problem(file, number, 1, key, f"the {quote} quote is never closed"))
                break
            i += used
            if after.strip() and not after.strip().startswith("#"):
                problems.append(Problem(file, number, 1, key, f"unexpected text after the closing quote: {after.strip()[:20]!r}"))
                continue
            if quote == "'":
                out[key] = value
                continue
        else:
            value = re.split(r"\s#", raw, maxsplit=1)[0].strip()
        out[key] = _substitute(value, key, file, number, scope, problems)
    return out


def _quoted(start: str, quote: str, lines: list[str], following: int) -> tuple[str | None, str, int]:
    """The quoted value from ``start`` (after the opening quote), maybe over several lines:
    (value, the text after the closing quote, how many further lines it took); value None if unclosed."""
    text, used = start, 0
    while True:
        value, after = _close(text, quote)
        if value is not None:
            return value, after, used
        if following + used >= len(lines):
            return None, "", used
        text += "\n" + lines[following + used]
        used += 1


def _close(text: str, quote: str) -> tuple[str | None, str]:
    out: list[str] = []
    j = 0
    while j < len(text):
        ch = text[j]
        if ch == quote:
            return "".join(out), text[j + 1:]
        if ch == "\\" and quote == '"' and j + 1 < len(text):
            nxt = text[j + 1]
            out.append(_ESCAPES.get(nxt, "\\" + nxt))
            j += 2
            continue
        out.append(ch)
        j += 1
    return None, ""


def _substitute(value: str, key: str, file: str, line: int, scope: Mapping[str, str],
                problems: list[Problem]) -> str:
    marks = Marks(file, {(key,): (line, 1)})
    result = interpolate({key: value}, scope, marks, problems)
    return str(result[key])
