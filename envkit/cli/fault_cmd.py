"""``envkit fault RUN SERVICE KIND [KEY=VALUE…]`` (or ``envkit fault RUN SCENARIO``) and ``envkit heal RUN [SERVICE]``."""

from __future__ import annotations

import time

import click

from envkit.errors import UsageError

__all__ = ["fault", "heal"]


def _params(items: tuple[str, ...]) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items:
        key, eq, value = item.partition("=")
        if not eq or not key:
            raise UsageError(f"fault parameter {item!r}: write KEY=VALUE (e.g. latency=200ms)")
        out[key.replace("-", "_")] = value
    return out


@click.command()
@click.argument("run")
@click.argument("target")
@click.argument("args", nargs=-1)
@click.option("--for", "for_", metavar="DURATION", help="Heal after this (10s, 500ms, 2m); the command waits.")
@click.option("--seed", type=int, help="Seed the fault's random choices (toxicity rolls, jitter, corruption, loss).")
def fault(run: str, target: str, args: tuple[str, ...], for_: str | None, seed: int | None) -> None:
    """Apply a fault to a service of RUN: TARGET is a service and the first of ARGS the kind, then its
    KEY=VALUE parameters; or TARGET is a scenario of the blueprint's faults:.

    \b
    Kinds: stop kill pause restart | disconnect partition loss |
           latency bandwidth slow_close timeout reset slicer limit_data corrupt truncate
    Common: replica=N port=P direction=upstream|downstream|both probability=0..1 peer=SERVICE network=NET
            via=proxy|iptables|netem|front|disconnect (the mechanism; default: proxy / iptables, or the
            fallbacks where helpers cannot have NET_ADMIN); loss: per=packet|connection
    Example:
      envkit fault RUN db pause --for 5s
      envkit fault RUN api latency latency=200ms jitter=20ms direction=both
      envkit fault RUN db reset after_bytes=4096 probability=0.3 --seed 7
      envkit fault RUN web loss percent=30
      envkit fault RUN payments-slow            # a scenario of the blueprint

    Without --for the fault stays until `envkit heal RUN`.
    """
    from rich.markup import escape

    from envkit import api
    from envkit.cli.commands import Session, err
    from envkit.faults import session
    from envkit.faults.kinds import parse_duration

    kind = args[0] if args and "=" not in args[0] else None
    params = _params(args[1:] if kind else args)
    duration = parse_duration(for_, "--for") / 1000 if for_ else None
    backend = click.get_current_context().ensure_object(Session).connect()
    env = api.attach(run, backend=backend)
    active = session.fault(env, target, kind, params, seed=seed)
    r = active.record
    if r.kind == "restart":
        err.print(f"[bold green]run {run}: {r.describe()} done[/]")
        return
    err.print(f"[bold yellow]run {run}: fault {r.id} applied[/]: {r.describe()} (seed {r.seed})")
    if note := r.live_note():
        err.print(f"[yellow]note:[/] {escape(note)}")
    wait = duration if duration is not None else active.duration
    if wait is None:
        err.print(f"heal it with `envkit heal {run} {r.service}`")
        return
    try:
        time.sleep(wait)
    finally:
        active.heal()
        err.print(f"[bold green]run {run}: fault {r.id} healed[/]")


@click.command()
@click.argument("run")
@click.argument("service", required=False)
def heal(run: str, service: str | None) -> None:
    """Undo the faults applied to RUN (or to one SERVICE), by any process: containers started or
    unpaused, networks reconnected with the same aliases, rules and proxies removed.

    \b
    Example:
      envkit heal dev db
    """
    from envkit.cli.commands import Session, err
    from envkit.faults import apply as faults
    from envkit.runs import describe

    backend = click.get_current_context().ensure_object(Session).connect()
    info = describe(backend, run)  # RunNotFound names the run
    if service is not None and service not in info.services:
        raise UsageError(f"run {run} has no service {service!r}; it has {', '.join(sorted(info.services))}")
    healed = faults.heal(backend, run, service)
    for r in healed:
        err.print(f"healed {r.id}: {r.describe()} (applied {r.at})")
    err.print(f"[bold green]run {run}: {len(healed)} fault{'s' if len(healed) != 1 else ''} healed[/]")
