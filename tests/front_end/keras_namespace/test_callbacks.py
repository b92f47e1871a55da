"""``keras.callbacks``: EarlyStopping, ModelCheckpoint and CSVLogger follow tf.keras' own callbacks on both backends.

The rules are checked against tf.keras itself: the same scripted epoch logs go
to ``tf.keras.callbacks.EarlyStopping`` / ``ModelCheckpoint`` / ``CSVLogger``
and to the torch backend's ``torch_impl.callbacks`` twins; real ``fit`` calls
on each backend then show the rule at work (stop epoch, restored weights,
files written and loaded back).
"""

import itertools
import math
import warnings

import numpy as np
import pytest

import dual_backend
from dual_backend import keras
from dual_backend.errors import DualBackendError
from tests.front_end.keras_namespace.support import BACKENDS, defined_on

tf = pytest.importorskip("tensorflow")
torch_callbacks = pytest.importorskip("torch_impl.callbacks")

_rng = np.random.default_rng(3)
X = _rng.normal(size=(240, 4)).astype("float32")
Y = (X[:, 0] + 0.5 * X[:, 1] > 0).astype("int64")


def tiny_model(backend: str, learning_rate: float = 0.05):
    model = defined_on(backend, lambda: [keras.Input((4,)), keras.layers.Dense(2, activation="softmax")])
    model.compile(keras.optimizers.SGD(learning_rate), "sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


class WeightsPerEpoch(dual_backend.Callback):
    def __init__(self):
        super().__init__()
        self.weights = []

    def on_epoch_end(self, epoch, logs=None):
        self.weights.append(self.model.get_weights())


def same_weights(first, second) -> bool:
    return all(np.array_equal(a, b) for a, b in zip(first, second, strict=True))


# ---------------------------------------------------------------------- scripted logs: ours against tf.keras' own


class ScriptedModel:
    """What the torch twins read of a front-end model: its metrics, weights and ``stop_training``."""

    metrics = ["accuracy"]

    def __init__(self):
        self.marker, self.stop_training = None, False

    def get_weights(self):
        return [np.full((1, 1), self.marker)]

    def set_weights(self, weights):
        self.marker = float(weights[0][0, 0])


@pytest.fixture(scope="module")
def keras_scripted_model():
    """A tf.keras model compiled with accuracy, its metrics built, as Keras' 'auto' mode reads them."""
    model = tf.keras.Sequential([tf.keras.Input((1,)), tf.keras.layers.Dense(1)])
    model.compile("sgd", "mse", metrics=["accuracy"])
    model.evaluate(np.zeros((2, 1)), np.zeros((2, 1)), verbose=0)
    return model


def keras_marker(model, value=None):
    if value is not None:
        model.set_weights([np.full(w.shape, value, "float32") for w in model.get_weights()])
    return float(model.get_weights()[0][0, 0])


def run_early_stopping(callback, model, set_marker, get_marker, sequence, monitor):
    """Feed one monitored value per epoch (the weights marked with the epoch), as ``fit`` would."""
    callback.set_model(model)
    model.stop_training = False
    callback.on_train_begin({})
    epochs = 0
    for epoch, value in enumerate(sequence):
        set_marker(epoch)
        other = "val_loss" if monitor != "val_loss" else "loss"
        callback.on_epoch_end(epoch, {monitor: value, other: 0.5})
        epochs += 1
        if model.stop_training:
            break
    callback.on_train_end({})
    return {"epochs run": epochs, "stopped_epoch": callback.stopped_epoch, "weights of epoch": get_marker()}


NAN = math.nan
LOSS_LIKE = {"falls, rises, falls": [1.0, 0.8, 0.85, 0.9, 0.7, 0.75, 0.76, 0.77],
             "plateau": [0.5] * 6,
             "small steps": [1.0, 0.99, 0.98, 0.975, 0.97, 0.969, 0.9685],
             "1e-9 apart (float32 ties)": [1.0, 1.0 - 1e-9, 1.0 - 2e-9, 0.9, 0.9 - 1e-9],
             "NaN": [1.0, NAN, 0.9, NAN, NAN, 0.8]}
ACCURACY_LIKE = {"rises with ties": [0.5, 0.6, 0.6, 0.65, 0.64, 0.7, 0.7, 0.69],
                 "falls, recovers": [0.9, 0.8, 0.85, 0.9, 0.95, 0.94]}
MONITORS = [("val_loss", "auto"), ("val_loss", "min"), ("loss", "max"), ("val_accuracy", "auto"),
            ("accuracy", "max"), ("val_accuracy", "min")]
VARIANTS = {"plain": {}, "min_delta 0.02": {"min_delta": 0.02}, "min_delta -0.02 (its sign ignored)": {"min_delta": -0.02},
            "baseline": {"baseline": "b"}, "start_from_epoch 2": {"start_from_epoch": 2}}
CASES = {f"{monitor} {mode}, patience {patience}, {variant}": (monitor, mode, patience, VARIANTS[variant])
         for (monitor, mode), patience, variant in itertools.product(MONITORS, (0, 1, 2), VARIANTS)}


@pytest.mark.parametrize("case", CASES)
def test_early_stopping_stops_and_restores_where_tf_keras_does(case, keras_scripted_model):
    monitor, mode, patience, variant = CASES[case]
    accuracy = monitor.endswith("accuracy")
    settings = {"monitor": monitor, "mode": mode, "patience": patience, "restore_best_weights": True, **variant}
    if "baseline" in settings:
        settings["baseline"] = 0.62 if accuracy else 0.85
    for name, sequence in (ACCURACY_LIKE if accuracy else LOSS_LIKE).items():
        theirs = run_early_stopping(tf.keras.callbacks.EarlyStopping(**settings), keras_scripted_model,
                                    lambda epoch: keras_marker(keras_scripted_model, epoch),
                                    lambda: keras_marker(keras_scripted_model), sequence, monitor)
        model = ScriptedModel()
        ours = run_early_stopping(torch_callbacks.KerasEarlyStopping(keras.callbacks.EarlyStopping(**settings)),
                                  model, lambda epoch: setattr(model, "marker", float(epoch)), lambda: model.marker,
                                  sequence, monitor)
        assert ours == theirs, name


def test_early_stopping_without_restore_leaves_the_last_weights_and_prints_keras_lines(keras_scripted_model, capsys):
    settings = {"monitor": "val_loss", "patience": 1, "verbose": 1}
    sequence = LOSS_LIKE["falls, rises, falls"]
    for restore in (False, True):
        theirs = run_early_stopping(tf.keras.callbacks.EarlyStopping(**settings, restore_best_weights=restore),
                                    keras_scripted_model, lambda epoch: keras_marker(keras_scripted_model, epoch),
                                    lambda: keras_marker(keras_scripted_model), sequence, "val_loss")
        printed_by_keras = capsys.readouterr().out
        model = ScriptedModel()
        ours = run_early_stopping(
            torch_callbacks.KerasEarlyStopping(keras.callbacks.EarlyStopping(**settings, restore_best_weights=restore)),
            model, lambda epoch: setattr(model, "marker", float(epoch)), lambda: model.marker, sequence, "val_loss")
        assert ours == theirs == {"epochs run": 3, "stopped_epoch": 2, "weights of epoch": 1.0 if restore else 2.0}
        assert capsys.readouterr().out == printed_by_keras
    assert printed_by_keras == "Epoch 3: early stopping\nRestoring model weights from the end of the best epoch: 2.\n"


def test_auto_mode_refuses_a_metric_of_unknown_direction_in_keras_words(keras_scripted_model):
    theirs = tf.keras.callbacks.EarlyStopping(monitor="val_precision")
    theirs.set_model(keras_scripted_model)
    with pytest.raises(ValueError) as keras_error:
        theirs.on_epoch_end(0, {"val_precision": 0.5})
    ours = torch_callbacks.KerasEarlyStopping(keras.callbacks.EarlyStopping(monitor="val_precision"))
    ours.set_model(ScriptedModel())
    with pytest.raises(ValueError) as our_error:
        ours.on_epoch_end(0, {"val_precision": 0.5})
    assert str(our_error.value) == str(keras_error.value)
    assert "isn't able to automatically determine whether that metric should be maximized" in str(our_error.value)


def test_an_unknown_mode_is_warned_about_as_keras_does():
    with pytest.warns(UserWarning) as keras_warnings:
        tf.keras.callbacks.EarlyStopping(mode="smallest")
    with pytest.warns(UserWarning) as our_warnings:
        callback = keras.callbacks.EarlyStopping(mode="smallest")
    assert [str(w.message) for w in our_warnings] == [str(w.message) for w in keras_warnings]
    assert callback.mode == "auto"


# ---------------------------------------------------------------------- EarlyStopping in a real fit


@pytest.mark.parametrize("backend", BACKENDS)
def test_fit_stops_where_keras_rule_says_and_restores_the_best_epochs_weights(backend):
    # min_delta far above one epoch's change: epoch 1 (the first monitored) stays the best.
    model, weights = tiny_model(backend), WeightsPerEpoch()
    stopping = keras.callbacks.EarlyStopping(monitor="val_loss", min_delta=0.5, patience=1, start_from_epoch=1,
                                             restore_best_weights=True)
    history = model.fit(X, Y, epochs=6, batch_size=32, validation_split=0.25, verbose=0,
                        callbacks=[weights, stopping])
    assert history.epoch == [0, 1, 2]
    assert same_weights(model.get_weights(), weights.weights[1])
    assert not same_weights(model.get_weights(), weights.weights[2])
    replay = tf.keras.callbacks.EarlyStopping(monitor="val_loss", min_delta=0.5, patience=1, start_from_epoch=1)
    replay.set_model(tf.keras.Sequential())
    replay.on_train_begin()
    for epoch, value in enumerate(history.history["val_loss"]):
        replay.on_epoch_end(epoch, {"val_loss": value})
    assert replay.stopped_epoch == 2 and replay.best_epoch == 1


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_monitor_missing_from_the_logs_gets_keras_warning_naming_the_logs(backend):
    model = tiny_model(backend)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        history = model.fit(X[:64], Y[:64], epochs=2, verbose=0,
                            callbacks=[keras.callbacks.EarlyStopping(monitor="val_loss", restore_best_weights=True)])
    messages = {str(w.message) for w in caught if "Early stopping" in str(w.message)}
    assert messages == {"Early stopping conditioned on metric `val_loss` which is not available. "
                        "Available metrics are: accuracy,loss"}
    assert history.epoch == [0, 1]


# ---------------------------------------------------------------------- ModelCheckpoint


def test_model_checkpoint_refuses_keras_wrong_suffixes_in_keras_words(tmp_path):
    for settings in ({"filepath": str(tmp_path / "model.pt")},
                     {"filepath": str(tmp_path / "model.keras"), "save_weights_only": True},
                     {"filepath": str(tmp_path / "model.keras"), "save_freq": "batchy"}):
        with pytest.raises(ValueError) as keras_error:
            tf.keras.callbacks.ModelCheckpoint(**settings)
        with pytest.raises(DualBackendError) as our_error:
            keras.callbacks.ModelCheckpoint(**settings)
        assert str(our_error.value) == str(keras_error.value)


@pytest.mark.parametrize("refused, message", [
    (lambda path: keras.callbacks.ModelCheckpoint(path, save_freq=100),
     r"ModelCheckpoint\(save_freq=100\) is not supported by dual-backend on either backend \(saving at the end "
     r"of each epoch: 'epoch'\)"),
    (lambda path: keras.callbacks.TensorBoard(path, histogram_freq=1),
     r"TensorBoard\(histogram_freq=1\) is not supported by dual-backend on either backend"),
    (lambda path: keras.callbacks.TensorBoard(path, update_freq="batch"),
     r"TensorBoard\(update_freq='batch'\) is not supported"),
])
@pytest.mark.parametrize("backend", BACKENDS)
def test_what_a_backend_cannot_honour_is_refused_as_the_callback_is_made(backend, refused, message, tmp_path):
    dual_backend.set_backend(backend)
    with pytest.raises(DualBackendError, match=message):
        refused(str(tmp_path / "model.keras"))


CHECKPOINT_VALUES = [0.9, 0.7, 0.7, 0.8, 0.6, 0.65]


def test_save_best_only_writes_at_the_epochs_keras_writes(tmp_path, capsys):
    """The same scripted val_loss: the files Keras writes, and the same files from the torch twin."""
    written = {}
    for side in ("keras", "torch"):
        folder = tmp_path / side
        pattern = str(folder / "best_{epoch:02d}_{val_loss:.2f}.keras")
        if side == "keras":
            callback, model = tf.keras.callbacks.ModelCheckpoint(pattern, save_best_only=True, verbose=1), \
                tf.keras.Sequential([tf.keras.Input((1,)), tf.keras.layers.Dense(1)])
        else:
            callback = torch_callbacks.KerasModelCheckpoint(
                keras.callbacks.ModelCheckpoint(pattern, save_best_only=True, verbose=1))
            model = tiny_model("torch")
            model.build((None, 4))
        callback.set_model(model)
        callback.on_train_begin({})
        for epoch, value in enumerate(CHECKPOINT_VALUES):
            callback.on_epoch_begin(epoch, {})
            callback.on_epoch_end(epoch, {"loss": 1.0, "val_loss": value})
        written[side] = (sorted(path.name for path in folder.iterdir()),
                         capsys.readouterr().out.replace(str(folder), "FOLDER"))
    assert written["keras"][0] == written["torch"][0] == ["best_01_0.90.keras", "best_02_0.70.keras",
                                                          "best_05_0.60.keras"]
    assert written["torch"][1] == written["keras"][1]
    assert "val_loss did not improve from 0.70000" in written["torch"][1]


def test_initial_value_threshold_and_mode_max_as_keras(tmp_path):
    written = {}
    for side in ("keras", "torch"):
        folder = tmp_path / side
        settings = {"filepath": str(folder / "e{epoch}.keras"), "monitor": "val_accuracy", "save_best_only": True,
                    "initial_value_threshold": 0.6, "mode": "max"}
        if side == "keras":
            callback, model = tf.keras.callbacks.ModelCheckpoint(**settings), \
                tf.keras.Sequential([tf.keras.Input((1,)), tf.keras.layers.Dense(1)])
        else:
            callback, model = torch_callbacks.KerasModelCheckpoint(keras.callbacks.ModelCheckpoint(**settings)), \
                tiny_model("torch")
            model.build((None, 4))
        callback.set_model(model)
        for epoch, value in enumerate([0.5, 0.6, 0.61, 0.7, 0.7]):
            callback.on_epoch_end(epoch, {"val_accuracy": value})
        written[side] = sorted(path.stem for path in folder.iterdir())
    assert written["torch"] == written["keras"] == ["e3", "e4"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_checkpoints_load_back_with_the_best_epochs_weights(backend, tmp_path):
    model, weights = tiny_model(backend), WeightsPerEpoch()
    checkpoints = [keras.callbacks.ModelCheckpoint(tmp_path / "best.keras", monitor="val_accuracy",
                                                   save_best_only=True),
                   keras.callbacks.ModelCheckpoint(tmp_path / "best.weights.h5", monitor="val_accuracy",
                                                   save_best_only=True, save_weights_only=True),
                   keras.callbacks.ModelCheckpoint(tmp_path / "every_{epoch:02d}.keras")]
    history = model.fit(X, Y, epochs=3, batch_size=32, validation_split=0.25, verbose=0,
                        callbacks=[weights, *checkpoints])
    accuracies = history.history["val_accuracy"]
    best = max(range(3), key=lambda epoch: (accuracies[epoch], -epoch))  # the first of the highest: strictly better
    # Keras' own files on both backends, each read back on either
    assert sorted(path.name for path in tmp_path.iterdir()) == sorted(
        ["best.keras", "best.weights.h5", *(f"every_{epoch:02d}.keras" for epoch in (1, 2, 3))])
    for reader in ("keras", "torch"):
        assert same_weights(dual_backend.load_model(tmp_path / "best.keras", backend=reader).get_weights(),
                            weights.weights[best])
        assert same_weights(dual_backend.load_model(tmp_path / "every_03.keras", backend=reader).get_weights(),
                            weights.weights[2])
        fresh = tiny_model(reader)
        fresh.build((None, 4))
        fresh.load_weights(tmp_path / "best.weights.h5")
        assert same_weights(fresh.get_weights(), weights.weights[best])


def test_a_filepath_placeholder_the_logs_lack_raises_keras_key_error(tmp_path):
    pattern = str(tmp_path / "best_{val_los:.2f}.keras")
    theirs = tf.keras.callbacks.ModelCheckpoint(pattern)
    theirs.set_model(tf.keras.Sequential([tf.keras.Input((1,)), tf.keras.layers.Dense(1)]))
    with pytest.raises(KeyError) as keras_error:
        theirs.on_epoch_end(0, {"loss": 1.0, "val_loss": 0.5})
    ours = torch_callbacks.KerasModelCheckpoint(keras.callbacks.ModelCheckpoint(pattern))
    ours.set_model(tiny_model("torch"))
    with pytest.raises(KeyError) as our_error:
        ours.on_epoch_end(0, {"loss": 1.0, "val_loss": 0.5})
    assert str(our_error.value) == str(keras_error.value)
    assert not list(tmp_path.iterdir())


# ---------------------------------------------------------------------- CSVLogger


def keras_csv(path, runs, **settings) -> str:
    """What tf.keras' CSVLogger writes for these runs of epoch logs."""
    for epochs in runs:
        logger = tf.keras.callbacks.CSVLogger(str(path), **settings)
        logger.on_train_begin({})
        for epoch, logs in epochs:
            logger.on_epoch_end(epoch, logs)
        logger.on_train_end({})
    return path.read_text()


def history_rows(history):
    return [(epoch, {key: values[index] for key, values in history.history.items()})
            for index, epoch in enumerate(history.epoch)]


@pytest.mark.parametrize("backend", BACKENDS)
def test_csv_logger_writes_the_file_keras_writes_for_the_same_logs(backend, tmp_path):
    model = tiny_model(backend)
    path = tmp_path / "log.csv"
    first = model.fit(X, Y, epochs=2, validation_split=0.25, verbose=0, callbacks=[keras.callbacks.CSVLogger(path)])
    # Appended, without validation: Keras adds the val_ columns as NA, and no second header.
    second = model.fit(X, Y, epochs=3, initial_epoch=2, verbose=0,
                       callbacks=[keras.callbacks.CSVLogger(path, separator=";", append=True)])
    written = path.read_text()
    keras_csv(tmp_path / "keras.csv", [history_rows(first)])
    expected = keras_csv(tmp_path / "keras.csv", [history_rows(second)], separator=";", append=True)
    assert written == expected
    lines = written.splitlines()
    assert lines[0] == "epoch,accuracy,loss,val_accuracy,val_loss" and len(lines) == 4
    assert lines[3].startswith("2;") and lines[3].endswith(";NA;NA")


def test_csv_logger_torch_twin_matches_keras_on_scripted_logs(tmp_path):
    runs = [[(0, {"loss": 0.5, "accuracy": 0.25}), (1, {"loss": 0.125, "accuracy": 1 / 3})],
            [(2, {"loss": 0.1, "val_loss": 0.2, "accuracy": 0.7})]]
    for settings in ({}, {"separator": "\t"}, {"append": True}):
        expected = keras_csv(tmp_path / f"keras{len(settings)}{settings.get('separator', '')}.csv", runs, **settings)
        path = tmp_path / f"ours{len(settings)}{settings.get('separator', '')}.csv"
        for epochs in runs:
            logger = torch_callbacks.KerasCSVLogger(keras.callbacks.CSVLogger(path, **settings))
            logger.on_train_begin({})
            for epoch, logs in epochs:
                logger.on_epoch_end(epoch, logs)
            logger.on_train_end({})
        assert path.read_text() == expected, settings

