"""What happens when training goes wrong, the same on both backends.

A loss that turns NaN, Ctrl-C or SIGTERM in the middle of an epoch, a
backup that is not this run's, a model file that would run code when loaded,
two runs with one seed.  Each test is one row of docs/what_happens_when_training.md.
Models are small (fashion_mlp with 16 hidden units on 2,000 images, or
hello_world) so that the whole file stays short.
"""

import pickle
import re
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import dual_backend
from dual_backend import cli, data, lessons, run
from dual_backend.callbacks import BACKUP_FILES, BackupAndRestore, Callback
from dual_backend.errors import DataError, DualBackendError, TrainingInterrupted
from dual_backend.run import prepare_data, run_lesson

SMALL = {"hidden_units": 16}
MODEL_FILE = {"keras": "model.keras", "torch": "model.pt"}


@pytest.fixture(scope="module")
def images():
    prepared = prepare_data(lessons.recipe("fashion_mlp"), "quick")
    return prepared.x_train[:2000], prepared.y_train[:2000]


def small_model(backend, seed=0):
    dual_backend.backend_package(backend).seed(seed)
    return dual_backend.build("fashion_mlp", backend=backend, device="cpu", **SMALL)


def same_weights(first, second) -> bool:
    return all(np.array_equal(a, b) for a, b in zip(first.get_weights(), second.get_weights()))


class InterruptAt(Callback):
    """Ctrl-C in the middle of an epoch: ``KeyboardInterrupt`` at batch ``batch`` of epoch ``epoch``."""

    def __init__(self, epoch: int, batch: int = 10):
        super().__init__()
        self.epoch, self.batch, self.current = epoch, batch, 0

    def on_epoch_begin(self, epoch, logs=None):
        self.current = epoch

    def on_train_batch_end(self, batch, logs=None):
        if (self.current, batch) == (self.epoch, self.batch):
            raise KeyboardInterrupt


class WeightsAtEpochEnd(Callback):
    def __init__(self):
        super().__init__()
        self.weights = []

    def on_epoch_end(self, epoch, logs=None):
        self.weights.append(self.model.get_weights())


class Evil:
    """A pickle that creates ``marker`` when unpickled: what a booby-trapped file could do."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return Path.touch, (Path(self.marker),)


def with_run_callbacks(monkeypatch, *extra):
    """``dual-backend run`` with extra callbacks after the course's own."""
    course = run.course_callbacks
    monkeypatch.setattr(run, "course_callbacks", lambda recipe: course(recipe) + list(extra))


def scaled_inputs(monkeypatch, factor):
    """``dual-backend run`` on training inputs multiplied by ``factor`` (a learner's mistake)."""
    prepare = run.prepare_data

    def prepare_scaled(recipe, profile="full"):
        prepared = prepare(recipe, profile)
        prepared.x_train = prepared.x_train * np.float32(factor)
        return prepared

    monkeypatch.setattr(run, "prepare_data", prepare_scaled)


def hello_world_run(backend, out, **settings):
    return run_lesson("hello_world", backend, epochs=settings.pop("epochs", 3), seed=settings.pop("seed", 0),
                      device="cpu", out=out, verbose=settings.pop("verbose", 0), **settings)


@pytest.fixture
def interrupted_hello_world(backend, tmp_path, monkeypatch):
    """The output folder of a hello_world run (seed 0, 3 epochs) interrupted in epoch 2."""
    with monkeypatch.context() as patch:
        with_run_callbacks(patch, InterruptAt(epoch=1, batch=0))
        with pytest.raises(TrainingInterrupted):
            hello_world_run(backend, tmp_path)
    return tmp_path


# --------------------------------------------------------------------------- a loss that becomes NaN


@pytest.mark.parametrize("fault", ["hello_world on inputs x30, diverging", "fashion_mlp on inputs x1e38"])
def test_a_nan_or_infinite_loss_stops_training_at_that_batch_with_keras_words(backend, fault, images, capsys):
    if fault.startswith("hello_world"):
        (xs, ys), _ = data.load_hello_world()
        dual_backend.backend_package(backend).seed(0)
        model = dual_backend.build("hello_world", backend=backend, device="cpu")
        history = model.fit(xs * 30, ys, epochs=40, verbose=0)  # SGD's steps overshoot: the loss grows x8,000 an epoch
    else:
        x, y = images
        history = small_model(backend).fit(x * np.float32(1e38), y, epochs=3, verbose=0)
    losses = history.history["loss"]
    assert history.terminated_on_nan and len(losses) < history.params["epochs"]
    assert np.isfinite(losses[:-1]).all() and not np.isfinite(losses[-1])
    assert "Batch 0: Invalid loss, terminating training" in capsys.readouterr().out


def test_a_run_whose_loss_diverges_exits_1_saves_no_model_and_keeps_the_last_good_backup(
        backend, tmp_path, monkeypatch, capsys):
    scaled_inputs(monkeypatch, 30)
    code = cli.main(["run", "hello_world", "--backend", backend, "--epochs", "40", "--seed", "0", "--device", "cpu",
                     "--out", str(tmp_path)])
    assert code == 1
    error = capsys.readouterr().err
    backup = tmp_path / backend / "backup" / BACKUP_FILES[backend]
    stopped = re.search(r"error: The loss became (inf|nan) in epoch (\d+) of 40", error)
    assert stopped and f"{backup} still holds the epochs before" in error, error
    assert not (tmp_path / backend / MODEL_FILE[backend]).exists()
    kept = dual_backend.build("hello_world", backend=backend, device="cpu")._read_backup(backup)
    assert kept["epochs"] == int(stopped.group(2)) - 1 and np.isfinite(kept["history"]["loss"]).all()


# --------------------------------------------------------------------------- Ctrl-C and SIGTERM


def test_ctrl_c_mid_epoch_keeps_the_last_finished_epochs_backup(backend, images, tmp_path):
    x, y = images
    seen = WeightsAtEpochEnd()
    with pytest.raises(TrainingInterrupted, match=r"\(Ctrl-C\) in epoch 2 of 3.*holds the first 1 epoch") as caught:
        small_model(backend).fit(x, y, epochs=3, verbose=0,
                                 callbacks=[BackupAndRestore(tmp_path), seen, InterruptAt(epoch=1)])
    assert caught.value.epochs_kept == 1 and caught.value.backup_path == tmp_path / BACKUP_FILES[backend]
    assert sorted(p.name for p in tmp_path.iterdir()) == [BACKUP_FILES[backend]]  # no half-written file
    restored = small_model(backend, seed=1)
    restored.fit(x, y, epochs=1, verbose=0, callbacks=[BackupAndRestore(tmp_path)])  # nothing left to train
    assert all(np.array_equal(a, b) for a, b in zip(restored.get_weights(), seen.weights[0]))


def test_ctrl_c_still_works_after_an_interrupted_fit(backend, images):
    x, y = images
    before = signal.getsignal(signal.SIGINT)
    with pytest.raises(TrainingInterrupted):
        small_model(backend).fit(x, y, epochs=2, verbose=0, callbacks=[InterruptAt(epoch=0)])
    assert signal.getsignal(signal.SIGINT) is before  # Lightning would leave Ctrl-C ignored


def test_an_interrupted_fit_without_a_backup_says_nothing_was_kept(backend, images):
    x, y = images
    with pytest.raises(TrainingInterrupted, match="Nothing was kept: give fit a dual_backend.BackupAndRestore"):
        small_model(backend).fit(x, y, epochs=2, verbose=0, callbacks=[InterruptAt(epoch=1)])


def test_a_resumed_fit_ends_bit_for_bit_as_an_uninterrupted_one_with_the_whole_history(backend, images, tmp_path):
    x, y = images
    uninterrupted = small_model(backend)
    expected = uninterrupted.fit(x, y, epochs=3, verbose=0)
    with pytest.raises(TrainingInterrupted):
        small_model(backend).fit(x, y, epochs=3, verbose=0, callbacks=[BackupAndRestore(tmp_path), InterruptAt(1)])
    resumed = small_model(backend)  # a fresh process builds the model again, then continues from the backup
    history = resumed.fit(x, y, epochs=3, verbose=0, callbacks=[BackupAndRestore(tmp_path)])
    assert history.epoch == [0, 1, 2] and history.history == expected.history
    assert same_weights(resumed, uninterrupted)
    assert not tmp_path.exists()  # a finished fit deletes its backup, as Keras' does


def test_ctrl_c_in_a_run_exits_130_naming_the_backup_and_resume(backend, tmp_path, monkeypatch, capsys):
    with_run_callbacks(monkeypatch, InterruptAt(epoch=1, batch=0))
    code = cli.main(["run", "hello_world", "--backend", backend, "--epochs", "3", "--device", "cpu",
                     "--out", str(tmp_path)])
    backup = tmp_path / backend / "backup" / BACKUP_FILES[backend]
    assert code == 130
    assert (f"Interrupted (Ctrl-C) in epoch 2 of 3. {backup} holds the first 1 epoch: run the same command "
            "with --resume") in capsys.readouterr().err


SIGTERM_IN_EPOCH_2 = """
import os, signal, sys
import dual_backend
from dual_backend import cli, run

class SigtermInEpoch2(dual_backend.Callback):
    def on_train_batch_end(self, batch, logs=None):
        if self.epoch == 1 and batch == 10:
            os.kill(os.getpid(), signal.SIGTERM)

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

course = run.course_callbacks
run.course_callbacks = lambda recipe: course(recipe) + [SigtermInEpoch2()]
sys.exit(cli.main(sys.argv[1:]))
"""


def test_sigterm_stops_a_run_with_exit_143_and_resume_ends_as_an_uninterrupted_run(backend, tmp_path, capsys):
    argv = ["run", "fashion_mlp", "--backend", backend, "--profile", "quick", "--epochs", "2", "--seed", "0",
            "--option", "hidden_units=16", "--device", "cpu", "--out", str(tmp_path / "run")]
    stopped = subprocess.run([sys.executable, "-c", SIGTERM_IN_EPOCH_2, *argv], capture_output=True, text=True)
    assert stopped.returncode == 143, stopped.stderr[-2000:]
    assert "Interrupted (SIGTERM) in epoch 2 of 2" in stopped.stderr and "--resume" in stopped.stderr
    assert not (tmp_path / "run" / backend / "metrics.json").exists()
    assert cli.main([*argv, "--resume"]) == 0  # here: the model is built anew, then continues from the backup
    resumed = capsys.readouterr().out
    assert "Epoch 1/2" not in resumed and "Epoch 2/2" in resumed
    run_lesson("fashion_mlp", backend, epochs=2, profile="quick", seed=0, device="cpu", options=SMALL,
               out=tmp_path / "uninterrupted", verbose=0)
    finished, uninterrupted = (dual_backend.load_model(tmp_path / name / backend / MODEL_FILE[backend], device="cpu")
                               for name in ("run", "uninterrupted"))
    assert same_weights(finished, uninterrupted)
    assert (tmp_path / "run" / backend / "history.json").read_text() == \
           (tmp_path / "uninterrupted" / backend / "history.json").read_text()


def interrupt_a_write(monkeypatch, owner, method: str, path_argument: int, at_call: int = 1):
    """Ctrl-C in the middle of the ``at_call``-th call of ``owner.method``, after it wrote a few bytes."""
    write, calls = getattr(owner, method), []

    def half_then_interrupt(*args, **kwargs):
        calls.append(args)
        if len(calls) == at_call:
            Path(args[path_argument]).write_bytes(b"half a file")
            raise KeyboardInterrupt
        return write(*args, **kwargs)

    monkeypatch.setattr(owner, method, half_then_interrupt)


def backup_writer(backend):
    """What writes a backup's bytes: numpy's ``savez`` on keras, ``torch.save`` (via Lightning) on torch."""
    if backend == "keras":
        return np, "savez", 0
    import torch

    return torch, "save", 1


def model_writer(backend):
    """What writes a saved model's bytes: Keras' ``Model.save``, or ``torch.save``."""
    if backend == "keras":
        import tensorflow as tf

        return tf.keras.Model, "save", 1
    import torch

    return torch, "save", 1


def test_ctrl_c_while_a_backup_is_written_leaves_the_previous_one_whole(backend, images, tmp_path, monkeypatch):
    x, y = images
    interrupt_a_write(monkeypatch, *backup_writer(backend), at_call=2)
    with pytest.raises(TrainingInterrupted) as caught:
        small_model(backend).fit(x, y, epochs=3, verbose=0, callbacks=[BackupAndRestore(tmp_path)])
    monkeypatch.undo()
    assert caught.value.epochs_kept == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == [BACKUP_FILES[backend]]


def test_ctrl_c_while_a_model_is_saved_leaves_the_previous_file_whole(backend, tmp_path, monkeypatch):
    model = small_model(backend)
    path = tmp_path / MODEL_FILE[backend]
    model.save(path)
    before = path.read_bytes()
    interrupt_a_write(monkeypatch, *model_writer(backend))
    with pytest.raises(KeyboardInterrupt):
        model.save(path)
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == [path.name]


# --------------------------------------------------------------------------- backups that do not fit


def test_a_run_over_a_backup_without_resume_refuses_to_start_over(backend, interrupted_hello_world):
    with pytest.raises(DualBackendError, match="holds the backup of an interrupted run: continue it with --resume"):
        hello_world_run(backend, interrupted_hello_world)


def test_resume_with_other_settings_is_refused_naming_them(backend, interrupted_hello_world):
    with pytest.raises(DualBackendError, match=r"is the backup of another run \(seed=0\), not of this one \(seed=1\)"):
        hello_world_run(backend, interrupted_hello_world, seed=1, resume=True)


def test_resume_from_a_truncated_backup_is_refused(backend, interrupted_hello_world):
    backup = interrupted_hello_world / backend / "backup" / BACKUP_FILES[backend]
    backup.write_bytes(backup.read_bytes()[:1000])
    with pytest.raises(DualBackendError, match="is not a readable backup .* Delete it to start over"):
        hello_world_run(backend, interrupted_hello_world, resume=True)


def test_resume_from_a_backup_that_would_run_code_refuses_it_unrun(backend, interrupted_hello_world, tmp_path):
    backup = interrupted_hello_world / backend / "backup" / BACKUP_FILES[backend]
    marker = tmp_path / "code-ran"
    backup.write_bytes(pickle.dumps({"dual_backend": Evil(marker)}, protocol=2))
    with pytest.raises(DualBackendError, match="is not a readable backup: it asks to run Python code when loaded"):
        hello_world_run(backend, interrupted_hello_world, resume=True)
    assert not marker.exists()


def test_resume_with_nothing_to_resume_trains_from_epoch_1(backend, tmp_path, capsys):
    metrics = hello_world_run(backend, tmp_path, epochs=2, resume=True, verbose=1)
    assert metrics["epochs_run"] == 2
    assert f"Nothing to resume in {tmp_path / backend / 'backup'}: training from epoch 1." in capsys.readouterr().out


def test_resume_of_a_finished_run_keeps_it_and_other_settings_train_anew(backend, tmp_path, capsys, monkeypatch):
    finished = hello_world_run(backend, tmp_path, epochs=2)
    model_file = tmp_path / backend / f"model{dual_backend.FILE_FORMATS[backend].model}"
    written = model_file.stat().st_mtime_ns
    fits = []
    fit = dual_backend.Model.fit
    monkeypatch.setattr(dual_backend.Model, "fit", lambda *args, **kwargs: fits.append(1) or fit(*args, **kwargs))
    assert hello_world_run(backend, tmp_path, epochs=2, resume=True, verbose=1) == finished
    assert f"{tmp_path / backend} holds a finished run with these settings; not trained again" \
           in capsys.readouterr().out
    assert not fits and model_file.stat().st_mtime_ns == written
    assert hello_world_run(backend, tmp_path, epochs=3, resume=True)["epochs_run"] == 3  # other settings
    assert fits == [1]


def test_run_both_resumed_after_its_second_backend_was_interrupted_trains_only_that_one(tmp_path, monkeypatch,
                                                                                         capsys):
    argv = ["run", "hello_world", "--backend", "both", "--epochs", "2", "--seed", "0", "--out", str(tmp_path)]
    children = []

    def child(command, environment):  # each backend's process, run here; torch's is "interrupted" the first time
        backend = command[command.index("--backend") + 1]
        children.append((backend, "--resume" in command))
        assert environment["DUAL_BACKEND_STARTED_FOR"] == backend  # runs it itself, with no second hand-over
        if backend == "torch" and len(children) == 2:
            return 130
        return cli.main(command[3:])

    monkeypatch.setattr(cli, "_run_child", child)
    assert cli.main(argv) == 130
    keras_metrics = (tmp_path / "keras" / "metrics.json").read_text()
    assert cli.main([*argv, "--resume"]) == 0
    assert children == [("keras", False), ("torch", False), ("keras", True), ("torch", True)]
    out = capsys.readouterr().out
    assert f"{tmp_path / 'keras'} holds a finished run with these settings" in out
    assert "    test loss  test prediction  verdict" in out  # the side-by-side table, columns apart
    assert (tmp_path / "keras" / "metrics.json").read_text() == keras_metrics
    assert (tmp_path / "torch" / "metrics.json").exists()


def test_resume_continues_an_interrupted_run_to_the_end(backend, interrupted_hello_world):
    metrics = hello_world_run(backend, interrupted_hello_world, resume=True)
    assert metrics["epochs_run"] == 3 and not (interrupted_hello_world / backend / "backup").exists()


# --------------------------------------------------------------------------- saved models


def test_a_saved_and_loaded_model_predicts_exactly_the_same(backend, images, tmp_path):
    x, y = images
    model = small_model(backend)
    model.fit(x[:500], y[:500], epochs=1, verbose=0)
    model.save(tmp_path / MODEL_FILE[backend])
    loaded = dual_backend.load_model(tmp_path / MODEL_FILE[backend], device="cpu")
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))
    assert (loaded.lesson, loaded.variant, loaded.options["hidden_units"]) == ("fashion_mlp", model.variant, 16)
    assert loaded.count_params() == model.count_params()


def test_loading_a_model_file_that_would_run_code_is_refused(backend, tmp_path):
    marker = tmp_path / "code-ran"
    if backend == "keras":
        import tensorflow as tf

        path = tmp_path / "lambda.keras"
        tf.keras.Sequential([tf.keras.Input((28, 28)), tf.keras.layers.Lambda(lambda x: x * 2),
                             tf.keras.layers.Flatten(), tf.keras.layers.Dense(10)]).save(path)
        words = "is not a model to load in Keras' safe mode: it asks to run Python code when loaded"
    else:
        import torch

        path = tmp_path / "evil.pt"
        torch.save({"format": "dual-backend/torch/1", "lesson": Evil(marker)}, path)
        words = r"is not a readable dual-backend torch checkpoint: it asks to run Python code when loaded \(getattr\)"
    with pytest.raises(DualBackendError, match=words):
        dual_backend.load_model(path, device="cpu")
    assert not marker.exists()


def test_loading_a_truncated_model_file_is_refused_naming_it(backend, tmp_path):
    path = tmp_path / MODEL_FILE[backend]
    small_model(backend).save(path)
    path.write_bytes(path.read_bytes()[:2000])
    with pytest.raises(DualBackendError, match=f"{path} is (not a readable|neither a .keras archive)"):
        dual_backend.load_model(path, device="cpu")


def test_a_tampered_ascent_file_is_refused_before_it_is_unpickled(backend, tmp_path, monkeypatch):
    marker = tmp_path / "code-ran"
    (tmp_path / "ascent").mkdir()
    (tmp_path / "ascent" / "ascent.dat").write_bytes(pickle.dumps(Evil(marker)))
    monkeypatch.setenv(data.DATA_DIR_VARIABLE, str(tmp_path))
    with pytest.raises(DataError, match="does not have the expected content"):
        run_lesson("convolution", backend, device="cpu", verbose=0)
    assert not marker.exists()


# --------------------------------------------------------------------------- determinism


@pytest.mark.parametrize("lesson, options, samples", [("fashion_mlp", SMALL, 2000),
                                                      ("fashion_cnn", {"filters": 16}, 256)])
def test_one_seed_twice_gives_the_same_weights_bit_for_bit(backend, lesson, options, samples):
    prepared = prepare_data(lessons.recipe(lesson), "quick")
    x, y = prepared.x_train[:samples], prepared.y_train[:samples]
    weights = []
    for _ in range(2):
        dual_backend.backend_package(backend).seed(7)
        model = dual_backend.build(lesson, backend=backend, device="cpu", **options)
        model.fit(x, y, epochs=2, verbose=0)
        weights.append(model.get_weights())
    assert all(np.array_equal(a, b) for a, b in zip(*weights))
