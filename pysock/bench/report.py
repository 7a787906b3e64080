"""pysock bench, the reporting half: the statistics over the runs (medians,
spread, ratios to the baseline), the text table, the verdict and the plot.
Everything here works on the report dict pysock.bench.measure measures, so a
report saved as JSON can be shown again."""
from __future__ import annotations

import csv
import io
import json
import os
import statistics
from typing import Any, Callable

from pysock.errors import PysockError

Json = dict[str, Any]  # a report, or a part of one, as saved with --json
# The figures of a run as pysock load --json prints them, in order (here,
# where no C is loaded: pysock load's --help names them too).
LOAD_FIELDS = ("offered_rps", "achieved_rps", "sent", "received", "errors", "lost",
               "p50_us", "p90_us", "p99_us", "p999_us", "max_us")

FIGURES = ("rps", "p50_us", "p99_us", "mb_s", "cpu_us_per_req", "cpu_ms_per_mib", "ctx_per_req", "ctx_per_mib",
           "lost")


def medians(runs: list[Json]) -> Json:
    """The median of each figure over the runs that did not fail, and how
    far the server's CPU cost strayed from its median (half the range, as
    a fraction of the median): a measure of the noise."""
    good = [r for r in runs if r.get("ok")]
    out = {}
    for key in FIGURES:
        values = [r[key] for r in good if r.get(key) is not None]
        if values:
            out[key] = statistics.median(values)
    for key in ("cpu_us_per_req", "cpu_ms_per_mib"):
        values = [r[key] for r in good if r.get(key) is not None]
        if values and out.get(key):
            out["cpu_spread"] = (max(values) - min(values)) / 2 / out[key]
    return out


def add_ratios(results: list[Json], baseline: str) -> None:
    """Each entry's medians as ratios to the baseline server's under the same load."""
    base = {e["load"]: e.get("median", {}) for e in results if e["server"] == baseline and e["status"] == "ok"}
    for entry in results:
        ref = base.get(entry["load"])
        if ref is None or "median" not in entry:
            continue
        entry["ratio"] = {k: v / ref[k] for k, v in entry["median"].items()
                          if k not in ("lost", "cpu_spread", "ctx_per_req", "ctx_per_mib") and ref.get(k)}


def _fmt(value: float | None, digits: int = 0) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def _ratio(entry: Json, key: str) -> str:
    r = entry.get("ratio", {}).get(key)
    return "" if r is None else f"x{r:.2f}"


def _spread(entry: Json) -> str:
    spread = entry.get("median", {}).get("cpu_spread")
    return "" if spread is None else f"+-{spread * 100:.0f}%"


def _status(entry: Json) -> str:
    if entry["status"] != "ok":
        return str(entry["status"]) + (f" ({entry['error']})" if entry.get("error") else "")
    failed = entry.get("failed_runs", 0)
    return f"{failed}/{len(entry['runs'])} runs FAILED" if failed else "ok"


def _calls(entry: Json) -> str:
    """System calls per request (per MiB) from the traced run, or '-'."""
    per = entry.get("syscalls", {}).get("per_unit")
    return "-" if per is None else f"{per:.3g}"


def _small(value: float | None) -> str:
    return "-" if value is None else f"{value:.3g}"


def table(report: Json) -> str:
    """The comparison as text: one block per load, ratios to the C backend.
    ctx/req: the server threads' context switches per request (from /proc);
    sys/req: its system calls per request, from a traced run (--syscalls)."""
    plan = report["plan"]
    traced = bool(plan.get("syscalls"))
    lines = [f"pysock bench: {report['machine']['cpu']}, {report['machine']['nproc']} CPUs, "
             f"Python {report['machine']['python']}; {plan['reps']} runs of {plan['duration']:g} s per load "
             f"(medians; xN = ratio to {report['baseline']}; +-N% = half the range of the server's CPU cost "
             f"over the runs; ctx = the server's context switches"
             + ("; sys = its system calls, counted by strace in one more run)" if traced else ")")]
    width = max([16] + [len(e["server"]) for e in report["results"]])
    for load in report["loads"]:
        entries = [e for e in report["results"] if e["load"] == load["name"]]
        lines += ["", f"{load['name']}: {load['description']}"]
        if load["mib"]:
            lines.append(f"  {'server':<{width}} {'MB/s':>8} {'':>6} {'CPU ms/MiB':>11} {'':>6} {'':>5} "
                         f"{'ctx/MiB':>8}" + (f" {'sys/MiB':>8}" if traced else "") + "  status")
            for e in entries:
                m = e.get("median", {})
                lines.append(f"  {e['server']:<{width}} {_fmt(m.get('mb_s')):>8} {_ratio(e, 'mb_s'):>6} "
                             f"{_fmt(m.get('cpu_ms_per_mib'), 2):>11} {_ratio(e, 'cpu_ms_per_mib'):>6} "
                             f"{_spread(e):>5} {_small(m.get('ctx_per_mib')):>8}"
                             + (f" {_calls(e):>8}" if traced else "") + f"  {_status(e)}")
            continue
        lines.append(f"  {'server':<{width}} {'req/s':>8} {'':>6} {'p50 us':>7} {'p99 us':>8} "
                     f"{'CPU us/req':>10} {'':>6} {'':>5} {'ctx/req':>7}" + (f" {'sys/req':>7}" if traced else "")
                     + f" {'lost':>5}  status")
        for e in entries:
            m = e.get("median", {})
            lines.append(f"  {e['server']:<{width}} {_fmt(m.get('rps')):>8} {_ratio(e, 'rps'):>6} "
                         f"{_fmt(m.get('p50_us'), 1):>7} {_fmt(m.get('p99_us'), 1):>8} "
                         f"{_fmt(m.get('cpu_us_per_req'), 2):>10} {_ratio(e, 'cpu_us_per_req'):>6} "
                         f"{_spread(e):>5} {_small(m.get('ctx_per_req')):>7}"
                         + (f" {_calls(e):>7}" if traced else "")
                         + f" {_fmt(m.get('lost')):>5}  {_status(e)}")
    verdict = c_verdict(report)
    if verdict:
        lines += ["", verdict]
    return "\n".join(lines)


def c_verdict(report: Json) -> str | None:
    """Whether the C backend spent less server CPU per request than every
    Python model on every ping-pong load measured; None if nothing to compare."""
    losses, compared = [], 0
    for e in report["results"]:
        ratio = e.get("ratio", {}).get("cpu_us_per_req")
        if e["server"] == report["baseline"] or e.get("backend") != "python" or ratio is None:
            continue
        compared += 1
        if ratio <= 1.0:
            losses.append(f"{e['server']} on {e['load']} (x{ratio:.2f})")
    if not compared:
        return None
    if losses:
        return "C does NOT spend less server CPU per request than: " + ", ".join(losses)
    return f"C spends less server CPU per request than every Python model on every ping-pong load ({compared} compared)"


def failed_runs(report: Json) -> int:
    return sum(1 for e in report["results"] for r in e["runs"] if not r.get("ok"))


def check_plot_available() -> None:
    import importlib.util

    if importlib.util.find_spec("matplotlib") is None:
        raise PysockError("--plot needs matplotlib, which is not installed: pip install matplotlib "
                          "(or pip install 'pysock-echo[plot]')")


def plot(report: Json, path: str) -> None:
    """Grouped bars: server CPU per request and requests/s per ping-pong
    load, MB/s for the streams; one colour per server."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    servers = [s["name"] for s in report["servers"]]
    pingpong = [load["name"] for load in report["loads"] if not load["mib"]]
    streams = [load["name"] for load in report["loads"] if load["mib"]]
    panels = [("cpu_us_per_req", "server CPU per request (us, lower is better)", pingpong),
              ("rps", "requests/s (higher is better)", pingpong),
              ("mb_s", "stream MB/s (higher is better)", streams)]
    panels = [p for p in panels if p[2]]
    fig, axes = plt.subplots(len(panels), 1, figsize=(10, 3.6 * len(panels)), squeeze=False)
    width = 0.8 / max(len(servers), 1)
    for ax, (key, title, loads) in zip(axes[:, 0], panels):
        for i, server in enumerate(servers):
            values = []
            for load in loads:
                e: Json = next((e for e in report["results"] if e["server"] == server and e["load"] == load), {})
                values.append(e.get("median", {}).get(key, 0.0))
            ax.bar([x + i * width for x in range(len(loads))], values, width, label=server)
        ax.set_xticks([x + width * (len(servers) - 1) / 2 for x in range(len(loads))])
        ax.set_xticklabels(loads)
        ax.set_title(title)
        ax.grid(axis="y", alpha=0.3)
    axes[0, 0].legend(fontsize="small", ncol=min(len(servers), 5))
    m = report["machine"]
    fig.suptitle(f"pysock bench: {m['cpu']}, {m['nproc']} CPUs, Python {m['python']}", fontsize="medium")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# -- other forms of the same figures -----------------------------------------------
COLUMNS = ("load", "server", "status", "rps", "p50_us", "p99_us", "cpu_us_per_req", "mb_s", "cpu_ms_per_mib",
           "lost", "cpu_spread", "ctx_per_req", "ctx_per_mib", "syscalls_per_unit")


def rows(report: Json) -> list[Json]:
    """One flat row per server and load: the medians, as measured."""
    out = []
    for e in report["results"]:
        m = e.get("median", {})
        out.append({"load": e["load"], "server": e["server"], "status": e["status"],
                    **{k: m.get(k) for k in COLUMNS[3:-1]},
                    "syscalls_per_unit": e.get("syscalls", {}).get("per_unit")})
    return out


def as_csv(report: Json) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows(report))
    return buf.getvalue().rstrip("\n")


def as_markdown(report: Json) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for row in rows(report):
        lines.append("| " + " | ".join(_cell(row[k]) for k in COLUMNS) + " |")
    return "\n".join(lines)


def _cell(value: object) -> str:
    if value is None:
        return "-"
    return f"{value:.4g}" if isinstance(value, float) else str(value)


FORMATS: dict[str, Callable[[Json], str]] = {"table": table, "csv": as_csv, "markdown": as_markdown}


def load_report(path: str) -> Json:
    """A report saved with --json, for --compare."""
    try:
        with open(path) as f:
            report = json.load(f)
    except (OSError, ValueError) as exc:
        raise PysockError(f"cannot read a saved bench report from {path}: {exc}") from None
    if not isinstance(report, dict) or "results" not in report:
        raise PysockError(f"{path} is not a report of pysock bench --json")
    return report


def compare(report: Json, old: Json) -> str:
    """Each server and load measured in both runs: requests/s (MB/s for a
    stream) and server CPU per request, now against then."""
    then = {(e["server"], e["load"]): e.get("median", {}) for e in old["results"]}
    lines = [f"against the saved run ({old.get('command', 'pysock bench')}): now / then"]
    width = max([16] + [len(e["server"]) for e in report["results"]])
    for e in report["results"]:
        before = then.get((e["server"], e["load"]))
        now = e.get("median", {})
        if not before or not now:
            continue
        parts = []
        for key, label in (("rps", "req/s"), ("mb_s", "MB/s"), ("cpu_us_per_req", "CPU/req"),
                           ("cpu_ms_per_mib", "CPU/MiB")):
            if now.get(key) and before.get(key):
                parts.append(f"{label} x{now[key] / before[key]:.2f}")
        if parts:
            lines.append(f"  {e['load']:<16} {e['server']:<{width}} " + ", ".join(parts))
    if len(lines) == 1:
        lines.append("  nothing measured in both")
    return "\n".join(lines)


def check_writable(path: str) -> None:
    """Fail before measuring, not after, when the plot cannot be written."""
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise PysockError(f"cannot write the plot to {path}: no folder {folder}")
    if not os.access(folder, os.W_OK):
        raise PysockError(f"cannot write the plot to {path}: {folder} is not writable")
