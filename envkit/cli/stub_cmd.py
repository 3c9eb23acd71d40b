"""``envkit stub RUN SERVICE journal|respond|state|reset``: look at and steer a ``kind: stub`` service (docs/stubs.md)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import click

from envkit.cli.complete import run_ids, run_services
from envkit.errors import UsageError

__all__ = ["stub"]


def _client(ctx: click.Context) -> Any:
    from envkit.cli.commands import _attach

    run, service = ctx.obj["run"], ctx.obj["service"]
    return _attach(run).stub(service)


@click.group()
@click.argument("run", shell_complete=run_ids)
@click.argument("service", shell_complete=run_services)
@click.pass_context
def stub(ctx: click.Context, run: str, service: str) -> None:
    """Look at and steer SERVICE of RUN, a `kind: stub` service: what it received, how it answers.

    \b
    Example:
    envkit stub dev payments journal --method POST --path /charges
    envkit stub dev payments respond POST /charges --status 502 --times 1
    envkit stub dev payments respond POST /charges --fault reset
    envkit stub dev payments state filled --scenario cart
    envkit stub dev payments reset
    """
    ctx.obj = {"run": run, "service": service}


@stub.command()
@click.option("--method", help="Only requests with this method.")
@click.option("--path", help="Only requests whose path matches this pattern (/charges/{id}, *, a final **).")
@click.option("--route", help="Only requests the route of this name answered.")
@click.option("--count", is_flag=True, help="Print only how many requests matched.")
@click.option("--json", "as_json", is_flag=True, help="Print the requests as JSON (with headers and bodies).")
@click.pass_context
def journal(ctx: click.Context, method: str | None, path: str | None, route: str | None, count: bool,
            as_json: bool) -> None:
    """What the stub received, oldest first."""
    from rich.markup import escape

    from envkit.cli.commands import out

    entries = _client(ctx).journal(method, path, route=route)
    if count:
        out.print(str(len(entries)))
    elif as_json:
        out.print_json(json.dumps([{"seq": e.seq, "time": e.time, "method": e.method, "path": e.path,
                                    "query": e.query, "headers": dict(e.headers), "body": e.body,
                                    "route": e.route, "status": e.status, "id": e.id, "fault": e.fault}
                                   for e in entries]))
    else:
        for e in entries:
            at = datetime.fromtimestamp(e.time, UTC).strftime("%H:%M:%S.%f")[:-3]
            target = e.path + (f"?{e.query}" if e.query else "")
            body = " ".join(e.body.split())
            body = body if len(body) <= 80 else body[:79] + "…"
            # reset, empty, random_then_close: no status line was sent; malformed_*: the status, then bad bytes
            no_status = e.fault in ("reset", "empty", "random_then_close")
            answer = f"fault {e.fault}" if no_status else f"{e.status} fault {e.fault}" if e.fault else str(e.status)
            out.print(escape(f"{e.seq:>4} {at} {e.method:<6} {target} -> {answer} "
                             f"({e.route or 'unmatched'}) {body}".rstrip()), highlight=False)


@stub.command()
@click.argument("method")
@click.argument("path")
@click.option("--status", type=click.IntRange(100, 599), default=200, show_default=True)
@click.option("--json", "json_body", help="A JSON body (a template, as in the blueprint).")
@click.option("--body", help="A text body (a template).")
@click.option("-H", "--header", "headers", multiple=True, help="A response header NAME=VALUE (repeatable).")
@click.option("--delay", type=float, help="Seconds to wait before answering.")
@click.option("--fault", help="reset, empty, malformed_chunk, random_then_close or malformed_json.")
@click.option("--times", type=click.IntRange(1), help="Only the next N calls; default: until reset.")
@click.pass_context
def respond(ctx: click.Context, method: str, path: str, status: int, json_body: str | None, body: str | None,
            headers: tuple[str, ...], delay: float | None, fault: str | None, times: int | None) -> None:
    """Answer METHOD PATH this way from now on (before every route of the blueprint)."""
    from envkit.cli.commands import err

    if json_body is not None and body is not None:
        raise UsageError("use --json or --body, not both")
    try:
        value = json.loads(json_body) if json_body is not None else None
    except ValueError as exc:
        raise UsageError(f"--json is not JSON: {exc}") from exc
    pairs = {}
    for h in headers:
        name, sep, val = h.partition("=")
        if not sep or not name:
            raise UsageError(f"--header expects NAME=VALUE, got {h!r}")
        pairs[name] = val
    _client(ctx).respond(method, path, status, json=value, body=body, headers=pairs or None, delay=delay,
                         fault=fault, times=times)
    how = f"for the next {times} call(s)" if times else "until reset"
    what = f"fault {fault}" if fault else f"{status}"
    err.print(f"{ctx.obj['service']}: {method.upper()} {path} answers {what} {how}", highlight=False)


@stub.command()
@click.option("--journal-only", is_flag=True, help="Forget what was received; keep run-time responses.")
@click.pass_context
def reset(ctx: click.Context, journal_only: bool) -> None:
    """Drop run-time responses, the journal and every call count; scenarios back to their initial states."""
    from envkit.cli.commands import err

    client = _client(ctx)
    if journal_only:
        client.clear_journal()
    else:
        client.reset()
    err.print(f"{ctx.obj['service']}: {'journal cleared' if journal_only else 'reset'}", highlight=False)


@stub.command()
@click.argument("new_state", required=False)
@click.option("--scenario", default="default", show_default=True, help="The scenario to read or set.")
@click.pass_context
def state(ctx: click.Context, new_state: str | None, scenario: str) -> None:
    """Print every scenario's state, or move SCENARIO to NEW_STATE (until a route moves it, or reset)."""
    from envkit.cli.commands import err, out

    client = _client(ctx)
    if new_state is None:
        for name, current in sorted(client.states().items()):
            out.print(f"{name}\t{current}", highlight=False)
        return
    client.set_state(new_state, scenario)
    err.print(f"{ctx.obj['service']}: scenario {scenario} is now {new_state}", highlight=False)
