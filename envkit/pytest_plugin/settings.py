"""The plugin's options and ini keys, read once per pytest process into ``Settings``."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, cast

import pytest

__all__ = ["MARKER_SCOPES", "SCOPES", "Scope", "Settings", "add_options", "read_settings"]

Scope = Literal["session", "module", "class", "function"]
SCOPES: tuple[Scope, ...] = ("session", "module", "class", "function")
MARKER_SCOPES: tuple[Scope, ...] = ("module", "class", "function")


@dataclass(frozen=True)
class Settings:
    blueprint: Path | None
    scope: Scope = "session"
    keep: bool = False
    reuse: str | None = None
    shared: bool = False
    engine: str | None = None  # None: envkit.backends.connect() decides (ENVKIT_ENGINE, else docker)
    attached: bool = False  # reuse came from ENVKIT_RUN: pytest runs under `envkit run`
    artifacts: Path | None = None  # forensics bundles of failing tests and failed ups go here
    ttl: float | None = None  # seconds after which `envkit gc` may remove an environment (envkit.gc)
    snapshot: bool | None = None  # None: the blueprint's snapshot keys; True: also every seeded service; False: none
    env_files: tuple[Path, ...] | None = None  # what ${VAR} reads, as `envkit up --env-file`; None: the .env beside

    @property
    def default_source(self) -> str:
        """What the unmarked tests' environment comes from: ``reuse:RUN``, the blueprint, or "" (none)."""
        return f"reuse:{self.reuse}" if self.reuse else str(self.blueprint or "")


def add_options(parser: pytest.Parser) -> None:
    group = parser.getgroup("envkit", "envkit environments")
    group.addoption("--envkit-blueprint", metavar="PATH",
                    help="Blueprint behind the envkit_env fixture (ini: envkit_blueprint).")
    group.addoption("--envkit-scope", choices=SCOPES,
                    help="One environment per session (default), module, class or function (ini: envkit_scope).")
    group.addoption("--envkit-keep", action="store_true",
                    help="Keep an environment a failing test used (not reset after that test), and print how to "
                         "remove it.")
    group.addoption("--envkit-reuse", metavar="RUN",
                    help="Use the running environment RUN instead of bringing one up; never removed. Under "
                         "`envkit run` ($ENVKIT_RUN set) that run is used unless --envkit-blueprint is given.")
    group.addoption("--envkit-shared", action="store_true",
                    help="With pytest-xdist: one environment for all workers instead of one per worker (never "
                         "reset: envkit_reset on it is refused).")
    group.addoption("--envkit-engine", metavar="NAME",
                    help="The container engine (ini: envkit_engine; default: $ENVKIT_ENGINE, else docker).")
    group.addoption("--envkit-artifacts", metavar="DIR",
                    help="Write a forensics bundle for each failing test (and failed up) into DIR "
                         "(ini: envkit_artifacts).")
    group.addoption("--envkit-ttl", metavar="DURATION",
                    help="Environments expire after this (4h, 30m; default: never), for `envkit gc` (ini: envkit_ttl).")
    group.addoption("--envkit-snapshot", action="store_const", const=True, dest="envkit_snapshot",
                    help="Also start every seeded service from a snapshot, as `envkit up --snapshot` (ini: "
                         "envkit_snapshot = true).")
    group.addoption("--envkit-no-snapshot", action="store_const", const=False, dest="envkit_snapshot",
                    help="Use no snapshot at all: seed afresh (ini: envkit_snapshot = false).")
    group.addoption("--envkit-env-file", metavar="FILE", action="append", dest="envkit_env_file",
                    help="Read ${VAR}s from FILE (repeatable, later files win), as `envkit up --env-file`, instead of "
                         "the .env beside the blueprint (ini: envkit_env_file).")
    parser.addini("envkit_env_file", "Env files for ${VAR}, relative to this file (instead of the .env beside "
                  "the blueprint).", type="linelist", default=[])
    parser.addini("envkit_snapshot", "true: also snapshot every seeded service; false: no snapshot; default: as "
                  "the blueprint says.", default="")
    parser.addini("envkit_ttl", "Environments expire after this (4h, 30m; default: never).", default="")
    parser.addini("envkit_artifacts", "Folder for forensics bundles of failing tests, relative to this file.",
                  default="")
    parser.addini("envkit_blueprint", "Blueprint behind envkit_env, relative to this file.", default="")
    parser.addini("envkit_scope", "session (default) | module | class | function", default="session")
    parser.addini("envkit_engine", "The container engine envkit uses (default: $ENVKIT_ENGINE, else docker).",
                  default="")


def _path(config: pytest.Config, name: str) -> Path | None:
    """A path from the option ``name`` (relative to where pytest was started) or else from the ini key of
    the same name (relative to the ini file, or the rootdir)."""
    if config.getoption(name):
        return Path(os.path.normpath(config.invocation_params.dir / config.getoption(name)))
    if config.getini(name):
        base = config.inipath.parent if config.inipath else config.rootpath
        return Path(os.path.normpath(base / config.getini(name)))
    return None


def read_settings(config: pytest.Config) -> Settings:
    scope = config.getoption("envkit_scope") or config.getini("envkit_scope") or "session"
    if scope not in SCOPES:
        raise pytest.UsageError(f"envkit_scope = {scope!r}: use one of {', '.join(SCOPES)}")
    blueprint = _path(config, "envkit_blueprint")
    reuse = config.getoption("envkit_reuse") or None
    attached = False
    run = os.environ.get("ENVKIT_RUN", "")
    if run and not reuse and not config.getoption("envkit_blueprint"):
        # Under `envkit run BLUEPRINT -- pytest` the environment is up already: use it (never removed)
        # rather than bring a second one up from the ini file's blueprint.
        reuse, attached, blueprint = run, True, None
    shared = bool(config.getoption("envkit_shared"))
    if shared and scope != "session":
        raise pytest.UsageError(f"--envkit-shared shares the session's environment; it needs scope session, not {scope}")
    engine = config.getoption("envkit_engine") or config.getini("envkit_engine") or None
    artifacts = _path(config, "envkit_artifacts")
    ttl: float | None = None
    if config.getoption("envkit_ttl") or config.getini("envkit_ttl"):
        from envkit.errors import UsageError
        from envkit.gc import parse_ttl  # no engine client: regexes

        try:
            ttl = parse_ttl(config.getoption("envkit_ttl") or config.getini("envkit_ttl"))
        except UsageError as exc:
            raise pytest.UsageError(str(exc).replace("--ttl", "--envkit-ttl / envkit_ttl")) from exc
    snapshot: bool | None = config.getoption("envkit_snapshot")
    if snapshot is None and str(config.getini("envkit_snapshot")).strip():
        text = str(config.getini("envkit_snapshot")).strip().lower()
        if text not in ("true", "false", "yes", "no", "1", "0"):
            raise pytest.UsageError(f"envkit_snapshot = {config.getini('envkit_snapshot')!r}: use true or false "
                                    "(or leave it out: the blueprint's snapshot keys)")
        snapshot = text in ("true", "yes", "1")
    env_files: tuple[Path, ...] | None = None
    if config.getoption("envkit_env_file"):
        env_files = tuple(Path(os.path.normpath(config.invocation_params.dir / f))
                          for f in config.getoption("envkit_env_file"))
    elif config.getini("envkit_env_file"):
        base = config.inipath.parent if config.inipath else config.rootpath
        env_files = tuple(Path(os.path.normpath(base / f)) for f in config.getini("envkit_env_file"))
    return Settings(blueprint, cast(Scope, scope), bool(config.getoption("envkit_keep")),
                    reuse, shared, engine,
                    attached, artifacts, ttl, snapshot, env_files)
