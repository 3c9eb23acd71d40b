"""Shell completion (click's, for bash, zsh and fish): ``envkit completion SHELL`` prints the script.

Beyond commands, options and file names, it completes run ids (the runs on the engine, found by their
labels as ``envkit ls`` does), the services of the run named before (``envkit logs RUN <TAB>``) and
the services of the blueprint named before (``envkit up shop --only <TAB>``). Completion never fails
loudly: an engine that does not answer, or a blueprint that does not load, completes nothing.
"""

from __future__ import annotations

import os
from typing import Any

import click
from click.shell_completion import CompletionItem, get_completion_class

__all__ = ["SHELLS", "blueprint_services", "completion", "run_ids", "run_services"]

SHELLS = ("bash", "zsh", "fish")


def _quietly(fn: Any) -> list[CompletionItem]:
    try:
        return list(fn())
    except Exception:  # completion must never print a traceback into the user's shell
        return []


def run_ids(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[CompletionItem]:
    """The runs on the engine (by their labels), with their blueprint as help."""
    def find() -> list[CompletionItem]:
        from envkit import api

        session = ctx.find_root().obj
        backend = session.connect() if session is not None else None
        return [CompletionItem(r.run_id, help=r.blueprint) for r in api.ls(backend=backend)
                if r.run_id.startswith(incomplete)]

    return _quietly(find)


def run_services(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[CompletionItem]:
    """The services of the run named earlier on the line (``RUN``)."""
    def find() -> list[CompletionItem]:
        from envkit import api

        run = ctx.params.get("run")
        if not run:
            return []
        session = ctx.find_root().obj
        env = api.attach(run, backend=session.connect() if session is not None else None)
        return [CompletionItem(s) for s in env.services if s.startswith(incomplete)]

    return _quietly(find)


def blueprint_services(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[CompletionItem]:
    """The services of the blueprint named earlier on the line (``BLUEPRINT``)."""
    def find() -> list[CompletionItem]:
        from envkit.blueprint import load

        # While an option still lacks its value, click leaves the arguments unparsed in ``ctx.args``.
        blueprint = ctx.params.get("blueprint") or next((a for a in ctx.args if not a.startswith("-")), None)
        if not blueprint:
            return []
        return [CompletionItem(s) for s in load(blueprint).services if s.startswith(incomplete)]

    return _quietly(find)


@click.command()
@click.argument("shell", type=click.Choice(SHELLS), required=False)
def completion(shell: str | None) -> None:
    """Print the shell completion script for SHELL (default: from $SHELL).

    Completes commands, options, files, run ids (from the engine) and service names.

    \b
    Example:
      envkit completion bash > ~/.local/share/bash-completion/completions/envkit
      envkit completion zsh > "${fpath[1]}/_envkit"
      envkit completion fish > ~/.config/fish/completions/envkit.fish
      eval "$(envkit completion bash)"          # this shell only
    """
    from envkit.errors import UsageError

    shell = shell or os.path.basename(os.environ.get("SHELL", ""))
    if shell not in SHELLS:
        raise UsageError(f"name the shell: envkit completion {{{'|'.join(SHELLS)}}}")
    root = click.get_current_context().find_root().command
    cls = get_completion_class(shell)
    assert cls is not None  # every name in SHELLS is one of click's
    click.echo(cls(root, {}, "envkit", "_ENVKIT_COMPLETE").source())
