"""``dual-backend bench``: every system runs in its own process and lands in the table and the JSON;
the torch backend's fast path trains exactly what a plain PyTorch loop trains.

No timing is asserted here (a shared machine makes seconds noisy); the
measured tables are in docs/speed.md.
"""

import json
import subprocess
import sys

import pytest

from dual_backend import bench


def test_bench_runs_every_system_and_writes_table_and_json(tmp_path):
    out = tmp_path / "bench.json"
    table = tmp_path / "bench.md"
    command = [sys.executable, "-m", "dual_backend.cli", "bench", "hello_world", "--epochs", "2",
               "--profile", "quick", "--json", str(out), "--markdown", str(table)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(out.read_text())
    assert set(result["systems"]) == set(bench.SYSTEMS)
    for system, entry in result["systems"].items():
        assert entry["steady_seconds"] > 0 and entry["metric"] == "prediction", (system, entry)
    # One batch of six samples, the same seed: the port and the plain loop take the same two steps.
    assert result["systems"]["torch"]["value"] == pytest.approx(result["systems"]["plain-torch"]["value"], abs=1e-5)
    assert result["systems"]["keras"]["speed_vs_keras"] == pytest.approx(1.0)
    text = table.read_text()
    assert "| keras-on-torch |" in text and "| plain-torch |" in text
    assert "hello_world" in done.stdout


@pytest.mark.slow
def test_the_fast_path_trains_what_a_plain_loop_trains():
    """Same seed: the same initial weights and the same permutations, so after one quick epoch the
    torch backend (Lightning, 32 steps per Lightning batch) and the written-out loop agree."""
    results = [bench.measure(system, "fashion_mlp", None, epochs=1, device="cpu", profile="quick", seed=0)
               for system in ("torch", "plain-torch")]
    torch_backend, plain = (result["value"] for result in results)
    assert torch_backend == pytest.approx(plain, abs=2e-4)


def test_unknown_system_is_refused():
    done = subprocess.run([sys.executable, "-m", "dual_backend.cli", "bench", "fashion_mlp", "--systems", "jax"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "choose from keras, torch, keras-on-torch, plain-torch" in done.stderr


WORKER = """
import json, sys, time
from dual_backend.bench import RESULT_MARK, Turns

turns, spans = Turns.from_environment(), []
for epoch in range(3):
    turns.wait()
    if sys.argv[1] == "crash" and epoch == 2:
        sys.exit("crashed in epoch 3")
    start = time.perf_counter()
    time.sleep(0.05)
    spans.append((start, time.perf_counter()))
turns.wait()
print(RESULT_MARK + json.dumps({"spans": spans}))
"""


def test_workers_take_turns_one_epoch_at_a_time_and_a_crash_does_not_hang_the_others():
    # "crash" goes first in the third round (a forward one) and ends there; the others go on.
    commands = {name: [sys.executable, "-c", WORKER, name] for name in ("crash", "a", "b")}
    results = bench._run_workers_in_turns(commands, say=lambda line: None)
    assert results["crash"]["failed"] == "exit code 1" and "crashed in epoch 3" in results["crash"]["log"]
    spans = sorted((span, name) for name in ("a", "b") for span in results[name]["spans"])
    # Never two epochs at once, and the order reverses every round: a b | b a | a b.
    assert all(earlier[0][1] <= later[0][0] for earlier, later in zip(spans, spans[1:]))
    assert [name for _, name in spans] == ["a", "b", "b", "a", "a", "b"]


def test_epochs_that_waited_without_computing_are_named_and_left_out_of_a_second_ratio():
    # keras' epochs in one real run (2026-11-24): the third and fourth held a tf.data stall, in which
    # the process used no CPU; keras computes on ~1.65 cores, the torch run on ~1.9.
    keras = {"seconds_per_epoch": [23.87, 23.48, 38.80, 51.58], "cpu_seconds_per_epoch": [39.4, 38.7, 38.5, 38.9],
             "samples_per_epoch": 60000, "metric": "accuracy", "value": 0.9, "device": "cpu", "peak_memory_mb": 1}
    torch = {**keras, "seconds_per_epoch": [20.39, 22.56, 18.73, 20.86],
             "cpu_seconds_per_epoch": [38.7, 40.1, 36.2, 39.0]}
    assert bench.idle_epochs(torch["seconds_per_epoch"], torch["cpu_seconds_per_epoch"]) == {}
    idle = bench.idle_epochs(keras["seconds_per_epoch"], keras["cpu_seconds_per_epoch"])
    assert sorted(idle) == [2, 3] and idle[2] == pytest.approx(15.45, abs=0.1)
    assert bench.idle_epochs([1.0, 1.0, 1.0], None) == {}  # no CPU times (the convolution lesson)

    summary = bench.add_ratios({"keras": bench.summarise([keras]), "torch": bench.summarise([torch])})
    assert summary["keras"]["steady_seconds"] == 38.80 and summary["keras"]["steady_seconds_busy"] == 23.48
    assert [gap["epoch"] for gap in summary["keras"]["idle_epochs"]] == [3, 4]
    assert "idle_epochs" not in summary["torch"]
    assert summary["torch"]["speed_vs_keras"] == pytest.approx(38.80 / 20.86)
    table = bench.markdown({"lesson": "fashion_cnn", "variant": "default", "device": "cpu", "epochs": 4,
                            "repeats": 1, "turns": True, "profile": "full", "systems": summary})
    assert "| keras | 23.87 | 38.800 |" in table and "| torch | 20.39 | 20.860 |" in table
    assert "Idle epochs of keras" in table and "3 (15.4 s), 4 (28.0 s)" in table
    assert "vs keras, idle epochs left out: keras 1.00x, torch 1.13x." in table
