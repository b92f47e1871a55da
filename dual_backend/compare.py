"""``dual-backend compare``: run lessons on both backends, several seeds, and write a report.

Every run is ``dual-backend run`` in its own process, so the frameworks never
share one and a crash takes down only its own run.  Runs land in
``OUT/runs/<lesson>-<variant>/seed<S>/<backend>/`` and are not repeated when
their ``metrics.json`` is already there (resumable); a failed run keeps its
log and shows up in the report as failed.  The report is ``OUT/report.md``
(figures beside it in ``OUT/report_files/``) and ``OUT/report.html``, one
self-contained file with every image embedded.
"""

from __future__ import annotations

import base64
import html
import json
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from dual_backend import BACKENDS, lessons
from dual_backend.environments import environment_for
from dual_backend.model import steady_seconds
from dual_backend.run import RunSettings


@dataclass
class Run:
    lesson: str
    variant: str
    seed: int
    backend: str
    folder: Path  # OUT/runs/<lesson>-<variant>/seed<S>
    metrics: dict | None = None
    history: dict | None = None
    log_tail: str = ""

    @property
    def failed(self) -> bool:
        return self.metrics is None

    @property
    def label(self) -> str:
        return f"{self.lesson}/{self.variant} seed {self.seed} {self.backend}"


@dataclass
class Section:
    """One lesson and variant: its runs on both backends, all seeds."""

    lesson: str
    variant: str
    runs: list[Run] = field(default_factory=list)

    @property
    def anchor(self) -> str:
        return f"{self.lesson}-{self.variant}"

    def of(self, backend: str) -> list[Run]:
        return [run for run in self.runs if run.backend == backend and not run.failed]


def selection(lesson: str, variant: str | None, all_variants: bool) -> list[tuple[str, str]]:
    names = list(lessons.LESSONS) if lesson == "all" else [lessons.get(lesson).name]
    chosen = []
    for name in names:
        spec = lessons.get(name)
        if variant and lesson != "all":
            lessons.recipe(name, variant)  # an unknown variant is an error here
            chosen.append((name, variant))
        elif all_variants or lesson == "all":
            chosen += [(name, v) for v in ["default", *spec.variants]]
        else:
            chosen.append((name, "default"))
    return chosen


def run_one(run: Run, settings: RunSettings, show) -> Run:
    """``dual-backend run`` of ``settings`` in a child process, unless already done."""
    done = run.folder / run.backend / "metrics.json"
    log = run.folder / f"{run.backend}.log"
    if not done.exists():
        run.folder.mkdir(parents=True, exist_ok=True)
        command = settings.command(run.folder, resume=True)  # a retry continues an interrupted run
        with open(log, "w") as stream:
            child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                     env=environment_for(run.backend))
            for line in child.stdout:
                stream.write(line)
                if line.startswith("Epoch "):
                    show(f"{run.label}: {line.strip()}")
            child.wait()
    if done.exists():
        run.metrics = json.loads(done.read_text())
        history = run.folder / run.backend / "history.json"
        run.history = json.loads(history.read_text()) if history.exists() else {}
    else:
        run.log_tail = "".join(log.read_text(errors="replace").splitlines(keepends=True)[-20:]) \
            if log.exists() else "no log"
    return run


class Progress:
    """One status line, rewritten in place on a terminal and printed line by line elsewhere."""

    def __init__(self, total: int):
        self.total, self.index, self.live = total, 0, sys.stdout.isatty()

    def start(self, run: Run) -> None:
        self.index += 1
        self.show(f"{run.label}: starting")

    def show(self, text: str) -> None:
        line = f"[{self.index}/{self.total}] {text}"
        if self.live:
            print("\r" + line[:120].ljust(120), end="", flush=True)
        else:
            print(line, flush=True)

    def finish(self, run: Run, seconds: float) -> None:
        verdict = "FAILED" if run.failed else "done"
        self.show(f"{run.label}: {verdict} in {seconds:.0f} s")
        if self.live:
            print()


def compare(lesson: str, variant: str | None = None, all_variants: bool = False, seeds: int = 1,
            profile: str = "quick", device: str = "auto", out: Path | str = "runs/compare",
            epochs: int | None = None, same_start: bool = False, same_order: bool = False) -> list[Section]:
    out = Path(out)
    sections = [Section(name, v) for name, v in selection(lesson, variant, all_variants)]
    planned = [(section, seed, backend) for section in sections for seed in range(seeds) for backend in BACKENDS]
    progress = Progress(len(planned))
    for section, seed, backend in planned:
        run = Run(section.lesson, section.variant, seed, backend,
                  out / "runs" / f"{section.lesson}-{section.variant}" / f"seed{seed}")
        settings = RunSettings(section.lesson, backend, variant=section.variant, epochs=epochs, profile=profile,
                               seed=seed, device=device, init_from="keras" if same_start else None,
                               same_order=same_order)
        progress.start(run)
        began = time.perf_counter()
        section.runs.append(run_one(run, settings, progress.show))
        progress.finish(run, time.perf_counter() - began)
    write_report(sections, out, profile)
    return sections


# --------------------------------------------------------------------------- numbers


def mean_std(values: list[float]) -> tuple[float, float | None]:
    """The mean, and the standard deviation where there are two values or more (None: not measured)."""
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else None


def seconds(runs: list[Run]) -> tuple[float, float]:
    """Seconds per epoch of one backend's runs: the first epochs' mean (start-up and tracing) and
    the steady seconds of them all (``steady_seconds``), as ``bench`` reports its repeats."""
    per_epoch = [r.metrics["seconds_per_epoch"] for r in runs]
    return statistics.fmean(run[0] for run in per_epoch), steady_seconds(*per_epoch)


def verdicts(section: Section) -> dict:
    """Per backend: the judged value's mean ± std and whether it is inside the spec's range;
    and whether the backends' means differ by at most the lesson's tolerance."""
    recipe = lessons.recipe(section.lesson, section.variant)
    if recipe.fails_with:  # an error exercise: every run must stop with our clear error
        found = {b: [r.failed and recipe.fails_with in r.log_tail for r in section.runs if r.backend == b]
                 for b in BACKENDS}
        found = {b: bool(ok) and all(ok) for b, ok in found.items()}
        return {"kind": "error", "backends": found, "expected": recipe.fails_with, "inside": all(found.values())}
    if recipe.lesson.kind == "convolution":
        found = {b: all(all(r.metrics["equal_to_loop"].values()) for r in section.of(b)) for b in BACKENDS}
        return {"kind": "convolution", "backends": found,
                "inside": all(found.values()) and all(section.of(b) for b in BACKENDS)}
    profile = next((r.metrics["profile"] for r in section.runs if not r.failed), "quick")
    expected = recipe.expected(profile)
    result = {"kind": "train", "expected": expected, "backends": {}, "key": None}
    for backend in BACKENDS:
        runs = section.of(backend)
        if not runs:
            result["backends"][backend] = None
            continue
        result["key"] = lessons.judged_label(runs[0].metrics)
        mean, std = mean_std([lessons.judged_value(r.metrics) for r in runs])
        result["backends"][backend] = {"mean": mean, "std": std, "inside": mean in expected}
    both = [result["backends"][b] for b in BACKENDS]
    result["difference"] = abs(both[0]["mean"] - both[1]["mean"]) if all(both) else None
    result["tolerance"] = recipe.tolerance
    result["inside"] = all(b and b["inside"] for b in both) and result["difference"] is not None \
        and result["difference"] <= recipe.tolerance
    return result


# --------------------------------------------------------------------------- figures


def curves_figure(section: Section, path: Path) -> Path | None:
    """Both backends' learning curves overlaid: mean across seeds with a ±std band."""
    import numpy as np
    from matplotlib.figure import Figure

    from dual_backend.figures import epoch_axis

    keys = []
    for run in section.runs:
        keys += [k for k in (run.history or {}) if k not in keys]
    if not keys:
        return None
    panels = [k for k in keys if not k.startswith("val_")]
    longest = max((len(series) for run in section.runs for series in (run.history or {}).values()), default=1)
    figure = Figure(figsize=(5 * len(panels), 3.6), layout="constrained")
    for axes, key in zip(np.atleast_1d(figure.subplots(1, len(panels))), panels):
        for backend, colour in zip(BACKENDS, ("tab:red", "tab:blue")):
            for series, style in ((key, "-"), (f"val_{key}", "--")):
                curves = [r.history[series] for r in section.of(backend) if series in (r.history or {})]
                if not curves:
                    continue
                length = min(map(len, curves))
                values = np.array([c[:length] for c in curves])
                epochs = np.arange(1, length + 1)
                axes.plot(epochs, values.mean(0), style, marker="o", color=colour, label=f"{backend} {series}")
                axes.fill_between(epochs, values.min(0) if len(values) == 1 else values.mean(0) - values.std(0),
                                  values.max(0) if len(values) == 1 else values.mean(0) + values.std(0),
                                  color=colour, alpha=0.15)
        axes.set_title(key)
        axes.set_xlabel("epoch")
        epoch_axis(axes, 1, longest)
        axes.grid(True)
        axes.legend(fontsize=8)
    figure.savefig(path, dpi=80)
    return path


def cost_figure(section: Section, path: Path) -> Path | None:
    """Seconds per epoch (steady state) and peak resident memory, per backend."""
    from matplotlib.figure import Figure

    steady, memory = {}, {}
    for backend in BACKENDS:
        runs = [r for r in section.of(backend) if "seconds_per_epoch" in r.metrics]
        if runs:
            steady[backend] = seconds(runs)[1]
            memory[backend] = statistics.fmean(r.metrics.get("peak_memory_mb", {}).get("resident", 0) for r in runs)
    if len(steady) < 2:
        return None
    figure = Figure(figsize=(7, 2.6), layout="constrained")
    for axes, values, title in zip(figure.subplots(1, 2), (steady, memory),
                                   ("seconds per epoch (steady)", "peak resident memory, MiB")):
        axes.barh(list(values), list(values.values()), color=["tab:red", "tab:blue"])
        ratio = values["torch"] / values["keras"] if values["keras"] else float("nan")
        axes.set_title(f"{title}\ntorch / keras = {ratio:.2f}", fontsize=9)
    figure.savefig(path, dpi=80)
    return path


def lesson_figures(section: Section) -> list[tuple[str, Path]]:
    """The lesson's own figures from the first seed that has them, each backend's side by side."""
    found = []
    for backend in BACKENDS:
        runs = section.of(backend)
        if runs:
            folder = runs[0].folder / backend
            names = runs[0].metrics.get("figures") or [p.name for p in sorted(folder.glob("*.png"))]
            found += [(f"{backend}: {name}", folder / name) for name in names if (folder / name).exists()]
    return found


# --------------------------------------------------------------------------- the report


def write_report(sections: list[Section], out: Path, profile: str) -> None:
    files = out / "report_files"
    files.mkdir(parents=True, exist_ok=True)
    blocks = []
    for section in sections:
        images = [("learning curves", curves_figure(section, files / f"{section.anchor}-curves.png")),
                  ("cost", cost_figure(section, files / f"{section.anchor}-cost.png"))]
        blocks.append((section, verdicts(section), [(n, p) for n, p in images if p] + lesson_figures(section)))
    environment = {"device": {}, "versions": {}, "hardware": {}}
    for run in (r for s in sections for r in s.runs if not r.failed):
        environment["device"][run.backend] = run.metrics.get("device")
        environment["versions"].update(run.metrics.get("versions", {}))
        environment["hardware"].update(run.metrics.get("hardware", {}))
    (out / "report.md").write_text(markdown(blocks, profile, environment, out))
    (out / "report.html").write_text(html_page(blocks, profile, environment))


def _pm(value: dict | None) -> str:
    if value is None:
        return "failed"
    if value["std"] is None:  # one seed: no spread was measured, so none is shown
        return f"{value['mean']:.4f}"
    return f"{value['mean']:.4f} ± {value['std']:.4f}"


def summary_rows(section: Section, verdict: dict) -> list[list[str]]:
    if verdict["kind"] == "error":
        return [[b, "stopped with the expected error" if ok else "did NOT stop with the expected error",
                 verdict["expected"], "inside" if ok else "OUTSIDE"] for b, ok in verdict["backends"].items()]
    if verdict["kind"] == "convolution":
        return [[b, "equal to the course's loop" if ok else "DIFFERENT from the loop", "exact", "inside" if ok
                 else "OUTSIDE"] for b, ok in verdict["backends"].items()]
    rows = []
    for backend in BACKENDS:
        value = verdict["backends"][backend]
        runs = section.of(backend)
        first, steady = seconds(runs) if runs else (float("nan"), float("nan"))
        memory = max((r.metrics.get("peak_memory_mb", {}).get("resident", 0) for r in runs), default=0)
        tests = [_pm(dict(zip(("mean", "std"), mean_std([r.metrics["test"][k] for r in runs])))) if runs
                 else "failed" for k in metric_keys(section)]
        params = f"{runs[0].metrics['params']:,}" if runs else "-"
        rows.append([backend, f"{len(runs)}", *tests, _pm(value), str(verdict["expected"]),
                     "inside" if value and value["inside"] else "OUTSIDE", f"{first:.2f}", f"{steady:.2f}",
                     params, f"{memory:.0f}"])
    return rows


def metric_keys(section: Section) -> list[str]:
    return next((list(r.metrics["test"]) for r in section.runs if not r.failed and "test" in r.metrics), [])


def summary_header(section: Section) -> list[str]:
    return ["backend", "seeds", *(f"test {k} (mean ± std)" for k in metric_keys(section)), "judged value",
            "expected", "verdict", "s first epoch", "s/epoch steady", "params", "peak MiB"]
CONVOLUTION_HEADER = ["backend", "result", "expected", "verdict"]


def _difference_line(verdict: dict) -> str:
    if verdict["kind"] != "train" or verdict["difference"] is None:
        return ""
    within = "within" if verdict["difference"] <= verdict["tolerance"] else "OUTSIDE"
    return (f"Difference between the backends' means ({verdict['key']}): {verdict['difference']:.4f}, "
            f"{within} the lesson's tolerance {verdict['tolerance']:g}.")


def _failures(section: Section) -> list[Run]:
    if lessons.recipe(section.lesson, section.variant).fails_with:
        return []  # failing is what an error exercise is for; its table says whether it failed right
    return [run for run in section.runs if run.failed]


def markdown(blocks, profile: str, environment: dict, out: Path) -> str:
    lines = [f"# dual-backend comparison ({profile} profile)", "",
             "| lesson | variant | verdict |", "|---|---|---|"]
    for section, verdict, _ in blocks:
        lines.append(f"| {section.lesson} | [{section.variant}](#{section.anchor}) | "
                     f"{'inside' if verdict['inside'] else 'OUTSIDE'} |")
    for section, verdict, images in blocks:
        header = summary_header(section) if verdict["kind"] == "train" else CONVOLUTION_HEADER
        lines += ["", f"## {section.lesson} / {section.variant}", "", "| " + " | ".join(header) + " |",
                  "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(row) + " |" for row in summary_rows(section, verdict)]
        lines += ["", _difference_line(verdict), ""]
        for run in _failures(section):
            lines += [f"**{run.label} failed**:", "", "```", run.log_tail.rstrip(), "```", ""]
        lines += [f"![{name}]({path.relative_to(out)})" for name, path in images]
    lines += ["", "## Environment", "", "```", json.dumps({k: environment.get(k) for k in
                                                          ("versions", "hardware", "device")}, indent=2), "```"]
    return "\n".join(lines) + "\n"


def _embedded(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f"data:image/png;base64,{data}"


def _table(header, rows) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td class='{_cls(c)}'>{html.escape(c)}</td>" for c in row) + "</tr>"
                   for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _cls(cell: str) -> str:
    return {"inside": "ok", "OUTSIDE": "bad", "failed": "bad"}.get(cell, "")


STYLE = """body{font-family:system-ui,sans-serif;margin:2em;max-width:1200px}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:.25em .6em;text-align:right}
th{background:#f3f3f3}.ok{color:#176b17;font-weight:600}.bad{color:#b00020;font-weight:700}
figure{display:inline-block;margin:.5em;vertical-align:top}figure img{max-width:560px;border:1px solid #ddd}
pre{background:#f7f7f7;padding:.6em;overflow-x:auto}"""


def html_page(blocks, profile: str, environment: dict) -> str:
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>dual-backend comparison</title>"
             f"<style>{STYLE}</style></head><body><h1>dual-backend comparison ({html.escape(profile)} profile)</h1>"]
    index = "".join(
        f"<tr><td>{html.escape(s.lesson)}</td><td><a href='#{s.anchor}'>{html.escape(s.variant)}</a></td>"
        f"<td class='{'ok' if v['inside'] else 'bad'}'>{'inside' if v['inside'] else 'OUTSIDE'}</td></tr>"
        for s, v, _ in blocks)
    parts.append(f"<table><thead><tr><th>lesson</th><th>variant</th><th>verdict</th></tr></thead>"
                 f"<tbody>{index}</tbody></table>")
    for section, verdict, images in blocks:
        header = summary_header(section) if verdict["kind"] == "train" else CONVOLUTION_HEADER
        parts.append(f"<h2 id='{section.anchor}'>{html.escape(section.lesson)} / {html.escape(section.variant)}</h2>")
        parts.append(_table(header, summary_rows(section, verdict)))
        parts.append(f"<p>{html.escape(_difference_line(verdict))}</p>")
        for run in _failures(section):
            parts.append(f"<p class='bad'>{html.escape(run.label)} failed:</p><pre>{html.escape(run.log_tail)}</pre>")
        parts += [f"<figure><img src='{_embedded(path)}' alt='{html.escape(name)}'>"
                  f"<figcaption>{html.escape(name)}</figcaption></figure>" for name, path in images]
    env = json.dumps({k: environment.get(k) for k in ("versions", "hardware", "device")}, indent=2)
    parts.append(f"<h2>Environment</h2><pre>{html.escape(env)}</pre></body></html>")
    return "\n".join(parts)
