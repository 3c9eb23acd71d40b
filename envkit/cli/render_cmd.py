"""``envkit render``: write the manifests of one run for another engine (so far: Kubernetes). No engine is asked."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from envkit.cli.envfiles import env_file_option, read_files

__all__ = ["render"]


@click.command()
@click.argument("blueprint", type=click.Path(path_type=Path))
@click.option("--engine", "engine", metavar="NAME", default=None,
              help="The engine to render for: kubernetes (default: envkit's --engine, else kubernetes).")
@click.option("-o", "--output", default="-", metavar="DIR|-",
              help="A folder for one file per group, numbered in apply order (replacing the NN-*.yaml of an "
                   "earlier render there); '-' (default): stdout.")
@click.option("--name", metavar="RUN", help="The run's name (default: BLUEPRINT-NAME-xxxxxx); its namespace is envkit-RUN.")
@click.option("--registry", metavar="HOST[/PATH]",
              help="Where the cluster pulls envkit's build images from (needed when the blueprint builds).")
@click.option("--ttl", type=float, metavar="SECONDS", help="Expiry annotation: `envkit gc` may remove the run after it.")
@click.option("--no-seed", is_flag=True, help="Leave out the services' seed steps.")
@env_file_option
@click.pass_context
def render(ctx: click.Context, blueprint: Path, engine: str | None, output: str, name: str | None,
           registry: str | None, ttl: float | None, no_seed: bool, env_files: tuple[Path, ...]) -> None:
    """Write the manifests of one run of BLUEPRINT for ENGINE (Kubernetes: a namespace, network
    policies, Deployments, StatefulSets, Jobs, headless Services, a Secret, volume claims).

    Pure: no cluster is asked. What Kubernetes cannot honour (host paths, build contexts without
    --registry, seed steps that need exec) is refused naming the key; what it carries only in part is
    listed as notes on stderr. See docs/kubernetes.md.
    """
    from rich.console import Console
    from rich.markup import escape

    from envkit.api import _identity
    from envkit.blueprint import load
    from envkit.errors import UsageError
    from envkit.images import image_tags
    from envkit.kube_render import ENGINE
    from envkit.kube_render import render as render_manifests

    chosen = (engine or ctx.find_root().params.get("engine") or ENGINE).strip().lower()
    if chosen != ENGINE:
        raise UsageError(f"--engine {chosen}: render writes manifests for kubernetes only "
                         "(for Docker Compose, use `envkit export`)")
    bp = load(blueprint, env_files=read_files(env_files))
    identity = _identity(bp, name, ttl, "detached")  # applied by hand: no owner process watches it
    manifests = render_manifests(bp, identity, image_tags(bp, bp.services), registry=registry, seed=not no_seed)
    err = Console(stderr=True, highlight=False, soft_wrap=True)
    if output == "-":
        sys.stdout.write(manifests.text(str(bp.file)))
    else:
        folder = Path(output)
        if folder.exists() and not folder.is_dir():
            raise UsageError(f"-o {output}: not a folder")
        folder.mkdir(parents=True, exist_ok=True)
        stale = sorted(p.name for p in folder.glob("[0-9][0-9]-*.yaml"))
        for p in stale:  # another run's groups would be applied with this one's
            (folder / p).unlink()
        for file, text in manifests.files().items():
            (folder / file).write_text(text, encoding="utf-8")
        err.print(f"wrote {len(manifests.files())} files to {escape(str(folder))} (run {manifests.run_id}, "
                  f"namespace {manifests.namespace}, {len(manifests.objects())} objects)")
    for note in manifests.notes:
        err.print(f"[yellow]note:[/] {escape(note)}")
