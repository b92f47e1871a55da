"""``dual-backend exec``: a user's own Keras script on each backend, its fit and evaluate results compared."""

import json

import pytest

from dual_backend import cli

SCRIPT = '''
import sys
import numpy as np
from dual_backend import keras

epochs = int(sys.argv[1])
rng = np.random.default_rng(0)
x, y = rng.normal(size=(64, 4)).astype("float32"), rng.integers(0, 3, 64)
model = keras.Sequential([keras.layers.Dense(8, activation="relu"), keras.layers.Dense(3, activation="softmax")])
model.compile(optimizer=keras.optimizers.Adam(0.01), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
model.fit(x, y, epochs=epochs, verbose=0)
print("backend:", keras.config.backend())
model.evaluate(x, y)
'''


def test_exec_runs_a_script_on_both_backends_and_prints_their_results_side_by_side(tmp_path, capsys):
    script = tmp_path / "mine.py"
    script.write_text(SCRIPT)
    assert cli.main(["exec", str(script), "--backend", "both", "--out", str(tmp_path / "runs"), "--", "2"]) == 0
    for backend in ("keras", "torch"):
        calls = json.loads((tmp_path / "runs" / backend / "calls.json").read_text())
        assert [call["call"] for call in calls] == ["fit", "evaluate"]
        assert len(calls[0]["history"]["loss"]) == 2 and list(calls[1]["result"]) == ["loss", "accuracy"]
    printed = capsys.readouterr().out
    assert "fit 1 (sequential, 2 epochs)" in printed and "evaluate 1" in printed
    assert "keras" in printed and "torch" in printed and "difference" in printed


def test_a_failing_script_keeps_the_calls_it_made_and_its_exit_code(tmp_path):
    script = tmp_path / "broken.py"
    script.write_text(SCRIPT + "\nraise SystemExit(3)\n")
    assert cli.main(["exec", str(script), "--backend", "torch", "--out", str(tmp_path / "runs"), "--", "1"]) == 3
    calls = json.loads((tmp_path / "runs" / "torch" / "calls.json").read_text())
    assert [call["call"] for call in calls] == ["fit", "evaluate"]


def test_a_missing_script_is_named(tmp_path):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["exec", str(tmp_path / "nothing.py")])
    assert exit_.value.code == 2
