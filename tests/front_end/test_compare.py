"""``dual-backend compare``: runs in child processes, a Markdown and a self-contained HTML report.

Two lessons (fashion_mlp for one epoch, convolution), two seeds, both backends:
eight child processes, about two minutes here.
"""

import json
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest

from dual_backend import compare

LESSONS = [("fashion_mlp", "default"), ("convolution", "default")]


class Page(HTMLParser):
    def __init__(self):
        super().__init__()
        self.images, self.tables, self.text = [], [], []

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.images.append(dict(attrs)["src"])
        if tag == "table":
            self.tables.append("")

    def handle_data(self, data):
        self.text.append(data)
        if self.tables:
            self.tables[-1] += data


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    out = tmp_path_factory.mktemp("compare")
    # A run that cannot write its folder fails: it must show up as failed, not stop the report.
    broken = out / "convolution" / "runs" / "convolution-default" / "seed1" / "torch"
    broken.parent.mkdir(parents=True)
    broken.write_text("not a folder")
    sections = []
    for lesson, variant in LESSONS:
        sections += compare.compare(lesson, variant, seeds=2, profile="quick", device="cpu", out=out / lesson,
                                    epochs=1)
    return out, sections


def test_report_files_are_written(report):
    out, _ = report
    for lesson, _ in LESSONS:
        assert (out / lesson / "report.md").stat().st_size > 500
        assert (out / lesson / "report.html").stat().st_size > 10_000


def test_html_embeds_every_image_and_names_both_backends_in_every_table(report):
    out, _ = report
    page = Page()
    page.feed((out / "fashion_mlp" / "report.html").read_text())
    assert len(page.images) >= 2 and all(src.startswith("data:image/png;base64,") for src in page.images)
    summary_tables = [t for t in page.tables if "s/epoch steady" in t or "result" in t]
    assert summary_tables and all("keras" in t and "torch" in t for t in summary_tables)
    assert "http" not in "".join(page.images)


def test_a_run_that_cannot_write_is_shown_as_failed(report):
    out, sections = report
    convolution = next(s for s in sections if s.lesson == "convolution")
    failed = [run for run in convolution.runs if run.failed]
    assert [(run.seed, run.backend) for run in failed] == [(1, "torch")]
    assert "convolution/default seed 1 torch failed" in (out / "convolution" / "report.md").read_text()
    assert failed[0].log_tail


def test_verdicts_follow_the_spec_and_flag_an_out_of_range_result(report, tmp_path):
    out, _ = report
    source = out / "fashion_mlp" / "runs"
    shutil.copytree(source, tmp_path / "runs")
    metrics_file = tmp_path / "runs" / "fashion_mlp-default" / "seed0" / "torch" / "metrics.json"
    metrics = json.loads(metrics_file.read_text())
    metrics["test"]["accuracy"] = metrics["judged_value"] = 0.10  # fabricated: far below the quick range
    metrics_file.write_text(json.dumps(metrics))
    (section,) = compare.compare("fashion_mlp", "default", seeds=2, profile="quick", device="cpu", out=tmp_path,
                                 epochs=1)  # completed runs are reused, nothing is retrained
    verdict = compare.verdicts(section)
    assert verdict["backends"]["keras"]["inside"] and not verdict["backends"]["torch"]["inside"]
    assert not verdict["inside"] and "OUTSIDE" in (tmp_path / "report.md").read_text()


@pytest.mark.skipif(shutil.which("chromium") is None, reason="needs Debian's chromium (installed by .ci/run)")
def test_report_renders_in_a_headless_browser(report, tmp_path):
    out, _ = report
    shot = tmp_path / "report.png"
    result = subprocess.run(
        ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}",
         "--window-size=1280,2000", f"--screenshot={shot}", (out / "fashion_mlp" / "report.html").as_uri()],
        capture_output=True, text=True, timeout=120)
    assert shot.exists() and shot.stat().st_size > 20_000, result.stderr[-2000:]


def test_an_error_exercise_is_inside_when_every_run_stops_with_our_error(tmp_path):
    message = "error: Received a label value of 9 which is outside the valid range of [0, 5) ..."
    section = compare.Section("fashion_mlp", "five_outputs", [
        compare.Run("fashion_mlp", "five_outputs", 0, "keras", tmp_path, log_tail=message),
        compare.Run("fashion_mlp", "five_outputs", 0, "torch", tmp_path, log_tail="Traceback: something else"),
    ])
    verdict = compare.verdicts(section)
    assert verdict["backends"] == {"keras": True, "torch": False} and not verdict["inside"]


def one_run(tmp_path, backend: str, seed: int, epochs: int) -> compare.Run:
    """A finished fashion_mlp quick run as its metrics.json and history.json would read."""
    accuracy = 0.80 + seed / 100
    metrics = {"profile": "quick", "judged_by": "accuracy", "judged_on": "test", "params": 101_770,
               "test": {"loss": 0.5, "accuracy": accuracy}, "final_training": {"loss": 0.5, "accuracy": accuracy},
               "seconds_per_epoch": [2.0] * epochs, "peak_memory_mb": {"resident": 900}, "device": "cpu"}
    history = {"loss": [0.6 - 0.01 * e for e in range(epochs)], "accuracy": [0.78 + 0.01 * e for e in range(epochs)]}
    return compare.Run("fashion_mlp", "default", seed, backend, tmp_path / f"seed{seed}", metrics, history)


def report_of(tmp_path, seeds: int, epochs: int) -> str:
    runs = [one_run(tmp_path, backend, seed, epochs) for seed in range(seeds) for backend in compare.BACKENDS]
    compare.write_report([compare.Section("fashion_mlp", "default", runs)], tmp_path, "quick")
    return (tmp_path / "report.md").read_text()


def test_a_one_seed_report_shows_no_spread_it_did_not_measure(tmp_path):
    report = report_of(tmp_path, seeds=1, epochs=2)
    assert "| keras | 1 | 0.5000 | 0.8000 | 0.8000 |" in report
    assert "±" not in report.split("## Environment")[0].replace("(mean ± std)", "")


def test_a_two_seed_report_shows_the_spread(tmp_path):
    assert "0.8050 ± 0.0071" in report_of(tmp_path, seeds=2, epochs=2)


def saved_axes(monkeypatch, draw) -> list:
    """The axes of every figure ``draw()`` saves."""
    from matplotlib.figure import Figure

    saved, save = [], Figure.savefig

    def keep(figure, *args, **kwargs):
        saved.extend(figure.axes)
        return save(figure, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", keep)
    draw()
    return saved


def visible_ticks(axes) -> list[float]:
    low, high = axes.get_xlim()
    return [tick for tick in axes.get_xticks() if low <= tick <= high]


@pytest.mark.parametrize("epochs", [1, 5])
def test_comparison_learning_curves_have_whole_epochs_on_the_x_axis(tmp_path, monkeypatch, epochs):
    section = compare.Section("fashion_mlp", "default",
                              [one_run(tmp_path, backend, 0, epochs) for backend in compare.BACKENDS])
    axes = saved_axes(monkeypatch, lambda: compare.curves_figure(section, tmp_path / "curves.png"))
    assert len(axes) == 2
    for panel in axes:
        assert panel.get_xlim() == (0.5, epochs + 0.5)
        assert visible_ticks(panel) == ([1] if epochs == 1 else [1, 2, 3, 4, 5])


@pytest.mark.parametrize("epochs", [1, 5])
def test_keras_basics_learning_curves_have_whole_epochs_on_the_x_axis(tmp_path, monkeypatch, epochs):
    from dual_backend import figures

    history = {"loss": [0.9 - 0.1 * e for e in range(epochs)], "accuracy": [0.6 + 0.05 * e for e in range(epochs)]}
    (axes,) = saved_axes(monkeypatch, lambda: figures.learning_curves_figure(history, tmp_path / "curves.png"))
    assert axes.get_xlim() == (-0.5, epochs - 0.5)
    assert visible_ticks(axes) == ([0] if epochs == 1 else [0, 1, 2, 3, 4])
    assert all((line.get_marker() != "None") == (epochs == 1) for line in axes.lines)  # one point is drawn  # the note's DataFrame index: the first epoch is 0
