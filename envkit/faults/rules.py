"""What a network-namespace helper runs, compiled from a fault (pure), and which mechanism a fault uses.

- ``loss_rules``: unseeded, ``-m statistic --mode random`` (the kernel's random numbers); seeded, a
  sequence drawn from the seed and compiled into ``--mode nth`` rules, so the same seed drops the same
  packets of the same sequence of packets. The nth rules only *mark* (a non-terminating target, so
  every rule counts every packet), one rule then drops what is marked.
- ``netem_commands`` / ``netem_refusal``: ``tc qdisc … netem`` where the kernel has it, and the clear
  refusal where it does not ("Specified qdisc kind is unknown").
- ``choose_via``: proxy / iptables / netem / front / disconnect, from the fault, what it asked for and
  whether helpers may have NET_ADMIN (``ENVKIT_FAULTS_NET_ADMIN=0`` forbids it).
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence

from envkit.errors import UsageError
from envkit.faults.kinds import CONNECTION, FaultSpec

__all__ = ["MARK", "NET_ADMIN_SWITCH", "PERIOD", "choose_via", "loss_rules", "net_admin_allowed",
           "netem_commands", "netem_refusal", "rule_script"]

PERIOD = 200  # a seeded loss repeats its drop pattern every PERIOD packets (percent in steps of 0.5)
MARK = "0x800000/0x800000"  # one bit of the packet mark, in the replica's own namespace only
NET_ADMIN_SWITCH = "ENVKIT_FAULTS_NET_ADMIN"


def loss_rules(percent: float, seed: int | None, src: str, tag: str, per: str = "") -> list[str]:
    """The rules (``%OP%`` for -A/-C/-D) dropping ``percent`` of incoming packets (from ``src``), or of
    connection attempts (``per="connection"``: packets that open a connection, conntrack state NEW; a
    TCP client's retried SYN is one more attempt). ``per`` defaults to connection when seeded — the
    number of packets of a TCP exchange depends on its retransmission timers, the number of attempts
    of a client does not, so only that replays — and to packet when not (the kernel's random)."""
    per = per or ("connection" if seed is not None else "packet")
    sel = f"{src} -m conntrack --ctstate NEW" if per == "connection" else src
    if seed is None:
        return [f"%OP% INPUT{sel} -m statistic --mode random --probability {percent / 100:.4f} {tag} -j DROP"]
    rng = random.Random(f"envkit-loss:{seed}")
    drops = sorted(rng.sample(range(PERIOD), round(percent / 100 * PERIOD)))
    rules = [f"-t mangle %OP% INPUT{sel} -m statistic --mode nth --every {PERIOD} --packet {i} {tag} "
             f"-j MARK --set-xmark {MARK}" for i in drops]
    return [*rules, f"-t mangle %OP% INPUT -m mark --mark {MARK} {tag} -j DROP"] if rules else []


def _restore(op: str, rules: Sequence[str], quiet: str = "") -> str:
    """One ``iptables-restore --noflush`` of the rules (grouped by table): one process, one commit."""
    tables: dict[str, list[str]] = {}
    for r in rules:
        table, rest = ("filter", r)
        if r.startswith("-t "):
            table, _, rest = r[3:].partition(" ")
        tables.setdefault(table, []).append(rest.replace("%OP%", op).strip())
    body = "\n".join(f"*{t}\n" + "\n".join(lines) + "\nCOMMIT" for t, lines in tables.items())
    return f"iptables-restore --noflush{quiet} <<'ENVKIT_RULES'\n{body}\nENVKIT_RULES"


def rule_script(op: str, rules: Sequence[str]) -> str:
    """``-A``: add them in order (one iptables-restore); ``+A``: add those not there yet (a
    re-application, idempotent); ``-D``: delete them (at once when all are there, else each one still
    there: a restarted replica has a fresh namespace without them)."""
    if not rules:
        return "true"
    if op == "-A":
        return _restore("-A", rules)
    if op == "+A":
        return "\n".join(f"iptables {r.replace('%OP%', '-C')} 2>/dev/null || iptables {r.replace('%OP%', '-A')}"
                         for r in rules)
    each = "\n".join(f"iptables {r.replace('%OP%', '-D')} 2>/dev/null || true" for r in rules)
    return f"if ! {_restore('-D', rules, ' 2>/dev/null')}\nthen\n{each}\nfi"


_DEVICES = "for d in $(ip -o link show | awk -F': ' '{print $2}' | cut -d@ -f1); do [ \"$d\" = lo ] && continue; "


def netem_commands(spec: FaultSpec) -> tuple[str, str]:
    """(apply, heal) shell scripts putting a netem qdisc on every interface of the namespace but lo."""
    if spec.kind == "latency":
        lat = spec.toxic.attributes() if spec.toxic is not None else {}
        args = f"delay {lat.get('latency', 0):g}ms" + (f" {lat['jitter']:g}ms" if lat.get("jitter") else "")
    else:
        args = f"loss {spec.percent:g}%"
    apply = _DEVICES + f"tc qdisc add dev \"$d\" root netem {args}; done"
    heal = _DEVICES + "if tc qdisc show dev \"$d\" | grep -q netem; then tc qdisc del dev \"$d\" root; fi; done"
    return apply, heal


def netem_refusal(output: str) -> str | None:
    """Why netem cannot be used, from tc's output (None: it worked, or it failed for another reason)."""
    low = output.lower()
    if "qdisc kind is unknown" in low or "unknown qdisc" in low or ("no such file or directory" in low and "netem" in low):
        return ("this engine's kernel has no netem qdisc (tc: \"Specified qdisc kind is unknown\", the sch_netem "
                "module is not built or loaded): leave via= out to use the fault proxy (latency) or iptables (loss)")
    return None


def net_admin_allowed(environ: Mapping[str, str]) -> bool:
    """False when ``ENVKIT_FAULTS_NET_ADMIN`` is 0/off/false/no: helpers never get NET_ADMIN."""
    return environ.get(NET_ADMIN_SWITCH, "").strip().lower() not in ("0", "off", "false", "no")


_VIAS: dict[str, tuple[str, ...]] = {"latency": ("proxy", "netem", "front"), "loss": ("iptables", "netem"),
                                     "partition": ("iptables", "disconnect")}


def choose_via(spec: FaultSpec, net_admin: bool, netem_known: str | None = None) -> str:
    """The mechanism for ``spec``: what it asked for (``via=``) if it can be had, else the default —
    proxy (connection faults) / iptables (loss, partition) with NET_ADMIN, front / disconnect without.
    ``netem_known``: a refusal already seen on this engine. UsageError naming what is missing."""
    allowed = _VIAS.get(spec.kind, ("proxy", "front") if spec.kind in CONNECTION else ())
    if not allowed:
        if spec.via:
            raise UsageError(f"fault {spec.kind!r} takes no via= (it is done by the engine)")
        return "engine"
    if spec.via and spec.via not in allowed:
        raise UsageError(f"fault {spec.kind!r}: via={spec.via!r} is not one of {', '.join(allowed)}")
    via = spec.via or (allowed[0] if net_admin else {"partition": "disconnect"}.get(spec.kind, "front"))
    if spec.kind == "loss" and not net_admin:
        via = spec.via or "iptables"
    if via in ("iptables", "netem", "proxy") and not net_admin:
        why = f"helpers may not have NET_ADMIN here ({NET_ADMIN_SWITCH}=0, or the engine refuses it)"
        if spec.kind == "loss":
            raise UsageError(f"fault 'loss' needs iptables or netem in the replica's namespace, and {why}; "
                             "a full outage without it: fault disconnect")
        raise UsageError(f"fault {spec.kind!r} via={via}: {why}; "
                         f"leave via= out for the fallback ({'disconnect' if spec.kind == 'partition' else 'front'})")
    if via == "netem":
        if netem_known:
            raise UsageError(f"fault {spec.kind!r} via=netem: {netem_known}")
        if spec.peer or spec.ports or spec.directions != ("downstream",) or spec.probability != 1.0:
            raise UsageError(f"fault {spec.kind!r} via=netem: netem delays or drops everything the replica sends "
                             "(every peer, port and connection); peer=, port=, direction= and probability= need "
                             "the proxy")
    if via == "front" and spec.peer:
        raise UsageError(f"fault {spec.kind!r} without NET_ADMIN (a front proxy on the service's name): "
                         "it faults every peer; peer= needs the iptables redirect")
    return via


LIVE = "envkit-live"


def live_script(ports: Sequence[int]) -> str:
    """Shell that prints ``envkit-live PORT N`` per port: the TCP connections established to it in this network
    namespace (``/proc/net/tcp`` and ``tcp6`` are the namespace's). Run before the REDIRECT goes in: a rule
    changes only connections opened after it, so these ones (a client's pool) stay unfaulted."""
    return "\n".join(f"echo {LIVE} {p} $(cat /proc/net/tcp /proc/net/tcp6 2>/dev/null | "
                     f"awk '$2 ~ /:{p:04X}$/ && $4 == \"01\"' | wc -l)" for p in ports)


def parse_live(output: str) -> dict[int, int]:
    """The counts ``live_script`` printed, by port (those with none left out)."""
    found = {}
    for line in output.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[0] == LIVE and parts[1].isdigit() and parts[2].isdigit() and int(parts[2]):
            found[int(parts[1])] = int(parts[2])
    return found
