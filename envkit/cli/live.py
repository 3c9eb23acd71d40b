"""Commands that work on a live run, as with Compose: ``restart``, ``stop``, ``start``, ``rebuild`` and
``logs`` (interleaved by time). A thin layer over ``envkit.live`` and ``envkit.logs``."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import click
from rich.markup import escape
from rich.table import Table

from envkit.cli.commands import Session, err, out
from envkit.cli.complete import run_ids, run_services
from envkit.cli.render import Renderer
from envkit.errors import UsageError

if TYPE_CHECKING:
    from envkit.backends.base import Backend
    from envkit.live import LivePlan, LiveResult, Verb

__all__ = ["COMMANDS"]

run_arg = click.argument("run", shell_complete=run_ids)
services_arg = click.argument("services", nargs=-1, metavar="[SERVICE]...", shell_complete=run_services)
verbose_opt = click.option("-v", "--verbose", is_flag=True, help="Show every step (and the build output).")
dry_run_opt = click.option("--dry-run", is_flag=True, help="Print the steps, do nothing.")
timeout_opt = click.option("-t", "--timeout", type=click.FloatRange(min=0), metavar="SECONDS",
                           help="How long a stop waits before it kills (default: the service's stop_grace_period, "
                                "else 10; 0 kills).")


def _engine() -> Backend:
    return click.get_current_context().ensure_object(Session).connect()


def _summary(result: LiveResult) -> None:
    table = Table("SERVICE", "CONTAINER", "STATE", "PORTS", box=None)
    for service in result.plan.services:
        for c in result.info.replicas(service):
            ports = ", ".join(f"{e.host_ip}:{e.port}->{key}" for key, e in sorted(c.ports.items()))
            table.add_row(service, c.name, c.status, ports)
    out.print(table)


def _lifecycle(verb: Verb, run: str, services: tuple[str, ...], verbose: bool, dry_run: bool,
               timeout: float | None) -> None:
    from envkit import live

    backend = _engine()
    if dry_run:
        _, plan = live.prepare(backend, run, verb, services, timeout=timeout)
        _print_plan(plan)
        return
    _summary(live.lifecycle(backend, run, verb, services, on_event=Renderer(err, verbose), timeout=timeout))


def _print_plan(plan: LivePlan) -> None:
    out.print(escape(plan.text()))


def _verb(verb: Verb, doc: str) -> click.Command:
    @click.command(name=verb, help=doc)
    @run_arg
    @services_arg
    @verbose_opt
    @dry_run_opt
    @timeout_opt
    def command(run: str, services: tuple[str, ...], verbose: bool, dry_run: bool, timeout: float | None) -> None:
        _lifecycle(verb, run, services, verbose, dry_run, timeout)

    return command


restart = _verb("restart", """Restart SERVICEs of RUN (every service when none is named; jobs only when named).

Dependants stop first and dependencies start first; each service must be ready again (its probe)
before what depends on it starts. The containers are kept, with what they wrote, their logs and DNS
names, and their host ports (pinned or not; on a remote engine, which chooses unpinned ones anew at
each start, envkit says which moved and `envkit rebuild` once pins them).

\b
Example:
  envkit restart shop-1a2b3c db
""")
stop = _verb("stop", """Stop SERVICEs of RUN (every service when none is named), dependants first.

The containers are kept: `envkit start` runs them again.

\b
Example:
  envkit stop shop-1a2b3c payments
""")
start = _verb("start", """Start stopped SERVICEs of RUN again (every service when none is named), dependencies first,
and wait until each is ready.

\b
Example:
  envkit start shop-1a2b3c payments
""")


@click.command()
@run_arg
@services_arg
@click.option("--blueprint", type=click.Path(path_type=Path),
              help="The blueprint to rebuild from (default: the one the run was made from).")
@verbose_opt
@dry_run_opt
@timeout_opt
def rebuild(run: str, services: tuple[str, ...], blueprint: Path | None, verbose: bool, dry_run: bool,
            timeout: float | None) -> None:
    """Rebuild SERVICEs' images and replace their containers in RUN, after a code change.

    Without SERVICE: every service (not job) whose build context changed. Each replica in turn is
    stopped, removed and created again from the blueprint with the same name, DNS aliases, networks
    and host ports, then must be ready; its dependants keep running. What the old container wrote
    outside named volumes does not carry over. A named job is run again.

    \b
    Example:
      envkit rebuild shop-1a2b3c api
    """
    from envkit import live

    backend = _engine()
    if dry_run:
        _, plan = live.prepare_rebuild(backend, run, services, blueprint=blueprint, timeout=timeout)
        _print_plan(plan)
        return
    result = live.rebuild(backend, run, services, blueprint=blueprint, on_event=Renderer(err, verbose),
                          timeout=timeout)
    if not result.plan.services:
        out.print("nothing to rebuild: no build context changed (name a service to replace it anyway)")
        return
    _summary(result)


@click.command()
@run_arg
@services_arg
@click.option("-f", "--follow", is_flag=True, help="Keep printing new lines (Ctrl-C to stop).")
@click.option("--tail", type=click.IntRange(min=0), metavar="N", help="Only the last N lines of each container.")
@click.option("--since", metavar="WHEN", help="Only lines since WHEN: a duration back (10m, 1h30m) or a time "
                                            "(2024-05-01T12:00:00Z, 2024-05-01, a UNIX time).")
@click.option("--until", metavar="WHEN", help="Only lines before WHEN (as --since).")
@click.option("-t", "--timestamps", is_flag=True, help="Show each line's time (UTC).")
@click.option("--no-prefix", is_flag=True, help="Do not name the service at the start of each line.")
def logs(run: str, services: tuple[str, ...], follow: bool, tail: int | None, since: str | None,
         until: str | None, timestamps: bool, no_prefix: bool) -> None:
    """Print the logs of RUN's services (or the SERVICEs named), interleaved by time.

    \b
    Example:
      envkit logs shop-1a2b3c --since 10m
      envkit logs shop-1a2b3c api worker -f --tail 20 -t
    """
    from envkit import api
    from envkit import logs as run_logs
    from envkit.secrets import redact

    env = api.attach(run, backend=_engine())
    chosen = run_logs.sources(env.info, services)
    prefix = not no_prefix and len(chosen) != 1
    width = max((len(name) for name, _ in chosen), default=0)
    after = run_logs.parse_since(since) if since else None
    before = run_logs.parse_since(until) if until else None
    hidden = env.hidden()  # a service that logs its password: shown as **** (docs/security.md)
    show: Callable[[run_logs.Entry], str] = lambda e: redact(e.line(prefix, timestamps, width), hidden) + "\n"  # noqa: E731
    if not follow:
        sys.stdout.write("".join(show(e) for e in run_logs.merged(env.backend, env.info, services, tail, after, before)))
        return
    if before is not None:
        raise UsageError("--until cannot be used with --follow")
    stream = run_logs.follow(env.backend, env.info, services, tail, after)
    try:
        for entry in stream:
            sys.stdout.write(show(entry))
            sys.stdout.flush()
    except KeyboardInterrupt:
        return
    finally:
        stream.close()


COMMANDS: tuple[click.Command, ...] = (restart, stop, start, rebuild, logs)
