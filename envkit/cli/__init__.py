"""The ``envkit`` command line: a thin layer over ``envkit.api``.

Exit codes: 0 ok · 1 internal · 2 usage · 3 invalid blueprint · 4 engine unreachable · 5 engine or build
failure · 6 a service failed or never got ready · 7 run not found · 130 interrupted; ``envkit run`` exits
with its command's code.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from envkit.cli.commands import Session, cli
from envkit.errors import EnvkitError

if TYPE_CHECKING:
    from envkit.backends.base import Backend

__all__ = ["cli", "main"]


def main(argv: list[str] | None = None, *, backend: Backend | None = None) -> int:
    """Run the command line. Without ``argv``: ``sys.argv``, and the process exits with the code. With a
    ``backend``, every command uses it instead of connecting to an engine (``--engine`` is then ignored)."""
    import click
    from rich.console import Console
    from rich.markup import escape

    err = Console(stderr=True, highlight=False, soft_wrap=True, emoji=False)
    try:
        result = cli.main(args=argv, prog_name="envkit", standalone_mode=False, obj=Session(backend=backend))
    except EnvkitError as exc:
        err.print(f"[red]error:[/] {escape(str(exc))}")
        code = exc.exit_code
    except click.ClickException as exc:
        exc.show()
        code = exc.exit_code
    except (KeyboardInterrupt, click.exceptions.Abort):
        err.print("[red]interrupted[/]")
        code = 130
    except SystemExit as exc:  # from click's own handling, e.g. --help
        code = exc.code if isinstance(exc.code, int) else 0
    else:
        code = result if isinstance(result, int) else 0
    if argv is None:
        sys.exit(code)
    return code
