"""``dual-backend bench``: every system runs in its own process and lands in the table and the JSON;
the torch backend's fast path trains exactly what a plain PyTorch loop trains.

No timing is asserted here (a shared machine makes seconds noisy); the
measured tables are in the README.
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
