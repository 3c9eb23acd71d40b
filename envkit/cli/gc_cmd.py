"""``envkit gc``: remove expired runs, runs whose owner process is gone, and orphaned networks and volumes."""

from __future__ import annotations

import json

import click

__all__ = ["gc"]


@click.command()
@click.option("--dry-run", is_flag=True, help="List what would be removed, and why; remove nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print every run's verdict and the orphans as JSON.")
@click.option("-v", "--verbose", is_flag=True, help="Also list the runs that are left, and why.")
def gc(dry_run: bool, as_json: bool, verbose: bool) -> None:
    """Remove what nobody else will: expired runs (--ttl), runs whose owner process is gone (this host),
    and envkit networks and volumes no run uses any more. Live runs of other processes stay."""
    from rich.markup import escape

    from envkit import gc as core
    from envkit.cli.commands import _engine, err, out
    from envkit.cli.render import Renderer

    backend = _engine()
    found = core.survey(backend)
    doc: dict[str, object] = {}
    if as_json:
        doc = {
            "dry_run": dry_run,
            "runs": [{"run": g.run_id, "owner": g.owner, "created_at": g.created_at, "lifetime": g.lifetime,
                      "expires_at": g.expires_at, "owner_state": g.liveness, "remove": g.collect,
                      "reason": g.reason, "resources": [f"{r.kind} {r.name}" for r in g.resources]}
                     for g in found.runs],
            "orphans": [{"kind": o.resource.kind, "name": o.resource.name, "run": o.run_id, "reason": o.reason}
                        for o in found.orphans],
        }
    verb = "would remove" if dry_run else "removing"
    lines = [f"{verb} run {g.run_id}: {g.reason} ({len(g.resources)} resources)" for g in found.collectable]
    lines += [f"{verb} {o.resource.kind} {o.resource.name}: {o.reason}" for o in found.orphans]
    if verbose:
        lines += [f"left run {g.run_id}: {g.reason}" for g in found.runs if not g.collect]
    if not as_json:
        for line in lines:
            err.print(escape(line))
    counts = {"container": 0, "network": 0, "volume": 0}
    if not dry_run:
        counts = core.collect(backend, found, Renderer(err, verbose))
    if as_json:
        out.print_json(json.dumps({**doc, "removed": counts}))
    elif dry_run:
        out.print(f"would remove {len(found.collectable)} runs and {len(found.orphans)} orphaned networks or volumes; "
                  f"{len(found.runs) - len(found.collectable)} runs stay")
    else:
        out.print(f"removed {len(found.collectable)} runs and {len(found.orphans)} orphans: {counts['container']} "
                  f"containers, {counts['network']} networks, {counts['volume']} volumes; "
                  f"{len(found.runs) - len(found.collectable)} runs stay")
