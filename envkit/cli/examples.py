"""An example in every command's ``--help``: ``EXAMPLES`` for the commands whose docstring has none.

``add_examples`` (called once, after every command is registered) puts each into its command's epilog;
a unit test holds every command to having an example, in its docstring or here.
"""

from __future__ import annotations

import click

__all__ = ["EXAMPLES", "add_examples"]

#: command → example lines, for the commands whose docstring carries none
EXAMPLES: dict[str, tuple[str, ...]] = {
    "validate": ("envkit validate blueprints/shop",),
    "plan": ("envkit plan blueprints/shop --offline --name demo",),
    "up": ("envkit up blueprints/shop --name dev --env-file .env.test",
           "envkit up blueprints/shop --only api --json | jq -r .outputs.API_URL"),
    "run": ("envkit run blueprints/shop -- pytest tests/",),
    "down": ("envkit down dev", "envkit down --all"),
    "ls": ("envkit ls --json",),
    "status": ("envkit status dev",),
    "exec": ("envkit exec dev db -- psql -U shop -c 'select 1'",),
    "outputs": ("envkit outputs dev --json",),
    "export": ("envkit export blueprints/shop -o compose.yaml",),
    "render": ("envkit render blueprints/hello --engine kubernetes --registry registry.local:5000 -o k8s/",),
    "seed": ("envkit seed dev db", "envkit seed dev"),
    "gc": ("envkit gc --dry-run", "envkit gc"),
    "snapshots": ("envkit snapshots ls", "envkit snapshots prune --older-than 7d"),
    "reset": ("envkit reset dev db",),
    "collect": ("envkit collect dev ./artifacts --reason 'login test failed'",),
    "logs": ("envkit logs dev api --tail 50", "envkit logs dev --since 10m -t", "envkit logs dev -f"),
    "images": ("envkit images ls", "envkit images prune --dry-run"),
    "restart": ("envkit restart dev api",),
    "stop": ("envkit stop dev worker",),
    "start": ("envkit start dev worker",),
    "rebuild": ("envkit rebuild dev api",),
}


def _example_text(lines: tuple[str, ...]) -> str:
    return "\b\nExample:\n" + "\n".join(f"  {line}" for line in lines)


def add_examples(group: click.Group) -> None:
    """Append the example of ``EXAMPLES`` to each command's ``--help`` that has none of its own."""
    for name, cmd in group.commands.items():
        if name in EXAMPLES and "Example" not in (cmd.help or "") and "Example" not in (cmd.epilog or ""):
            cmd.epilog = _example_text(EXAMPLES[name])

