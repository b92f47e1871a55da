"""Keras' model files as the bridge (``dual_backend.keras_file``, ``dual-backend convert``): a ``.keras`` or ``.h5``
file opens on torch without TensorFlow, a torch model saves as a ``.keras`` file tf.keras loads, with the same
predictions, the compile settings and the optimizer's state; what cannot be read as it is is refused by name."""

import io
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest

import dual_backend
from dual_backend import convert, keras, keras_file, lessons, parity
from dual_backend.cli import main
from dual_backend.errors import DualBackendError
from tests.front_end.keras_namespace.support import defined_on, max_difference
from tests.front_end.keras_namespace.test_layers_and_parity import FORWARD_CASES, randomised

FIXTURES = Path(__file__).parent / "fixtures"
tf = pytest.importorskip("tensorflow")


@pytest.fixture(autouse=True)
def backend_restored(monkeypatch):
    monkeypatch.setattr(keras.config, "_chosen", None)


def tolerance(outputs) -> float:
    return 1e-5 * max(1.0, float(np.abs(outputs).max()))


# ---------------------------------------------------------------------- every layer and option, both ways


# Every layer and every option value once: the file keeps arguments, so the forward parity tests' sweep of
# padding, strides and sizes (test_layers_and_parity.py) adds nothing here but time.
FILE_CASES = [case for case in FORWARD_CASES if "padding=" not in case] + [
    "Conv2D 3x3 padding='same' strides 2 on 13x13", "MaxPooling2D 2x2 padding='same' strides 2 on 13x13",
    "AveragePooling2D 3x3 padding='same' strides 2 on 12x12", "AveragePooling2D 2x2 padding='valid' strides 1 on 12x12"]


@pytest.mark.parametrize("case", FILE_CASES)
def test_a_keras_file_opens_on_torch_and_a_torch_model_saves_one_tf_keras_loads(case, tmp_path):
    make_layers, x = FORWARD_CASES[case]
    keras_model = defined_on("keras", make_layers)
    keras_model.set_weights(randomised(keras_model))
    keras_model.save(tmp_path / "keras.keras")  # tf.keras' own writer
    on_torch = dual_backend.load_model(tmp_path / "keras.keras", backend="torch")
    assert on_torch.backend == "torch" and on_torch.layer_names() == keras_model.layer_names()
    expected = keras_model.predict(x)
    assert max_difference([expected], [on_torch.predict(x)]) <= tolerance(expected)

    on_torch.save(tmp_path / "torch.keras")  # dual-backend's writer
    back = tf.keras.models.load_model(tmp_path / "torch.keras", safe_mode=True)
    assert max_difference([expected], [back.predict(x, verbose=0)]) <= tolerance(expected)
    assert max_difference(keras_model.get_weights(), back.get_weights()) == 0


def test_the_written_config_is_the_one_tf_keras_writes_for_the_same_model(tmp_path):
    def layers():
        return [keras.Input((13, 13, 3)), keras.layers.Rescaling(1 / 255),
                keras.layers.Conv2D(4, 3, strides=2, padding="same", activation="relu"),
                keras.layers.BatchNormalization(momentum=0.9), keras.layers.AveragePooling2D(2, padding="same"),
                keras.layers.Dropout(0.25), keras.layers.Flatten(),
                keras.layers.Dense(5, activation="softmax", kernel_initializer="he_normal", bias_initializer="ones")]

    written = {}
    for backend in ("keras", "torch"):
        model = defined_on(backend, layers, name="twin")
        model.compile(optimizer=keras.optimizers.Adam(learning_rate=0.01), loss="sparse_categorical_crossentropy",
                      metrics=["accuracy"])
        model.save(tmp_path / f"{backend}.keras")
        with zipfile.ZipFile(tmp_path / f"{backend}.keras") as archive:
            written[backend] = json.loads(archive.read("config.json"))

    def essentials(config):
        """Each layer's class, the arguments that decide what it computes, and its initialisers' classes."""
        kept = ("units", "activation", "filters", "kernel_size", "strides", "padding", "pool_size", "rate",
                "momentum", "epsilon", "scale", "offset", "batch_shape")
        initializers = ("kernel_initializer", "bias_initializer")
        return [(layer["class_name"], {k: v for k, v in layer["config"].items() if k in kept},
                 {k: layer["config"][k]["class_name"] for k in initializers if k in layer["config"]})
                for layer in config["config"]["layers"]]

    assert essentials(written["torch"]) == essentials(written["keras"])
    assert essentials(written["keras"])[-1][2] == {"kernel_initializer": "HeNormal", "bias_initializer": "Ones"}
    for backend in ("keras", "torch"):
        head = keras_file.read_definition(tmp_path / f"{backend}.keras")["layers"][-1][1]
        assert (head["kernel_initializer"], head["bias_initializer"]) == ("he_normal", "ones")
    for key in ("loss", "metrics"):
        assert written["torch"]["compile_config"][key] == written["keras"]["compile_config"][key]
    optimizers = [written[b]["compile_config"]["optimizer"] for b in ("keras", "torch")]
    assert optimizers[1]["class_name"] == optimizers[0]["class_name"] == "Adam"
    assert optimizers[1]["config"]["learning_rate"] == pytest.approx(optimizers[0]["config"]["learning_rate"])


def test_from_logits_and_the_compile_settings_travel_both_ways(tmp_path):
    def layers():
        return [keras.Input((6,)), keras.layers.Dense(3)]

    model = defined_on("torch", layers)
    model.compile(optimizer=keras.optimizers.RMSprop(learning_rate=0.005, momentum=0.5),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["acc"])
    model.save(tmp_path / "model.keras")
    on_keras = tf.keras.models.load_model(tmp_path / "model.keras", safe_mode=True)
    assert on_keras.loss.from_logits and type(on_keras.optimizer).__name__ == "RMSprop"
    assert float(on_keras.optimizer.learning_rate) == pytest.approx(0.005) and on_keras.optimizer.momentum == 0.5
    again = dual_backend.load_model(tmp_path / "model.keras", backend="torch")
    assert (again.loss, again.from_logits, again.metrics) == ("sparse_categorical_crossentropy", True, ["acc"])
    assert again.optimizer_description.settings["momentum"] == 0.5


# ---------------------------------------------------------------------- the lessons, and training that goes on


@pytest.mark.parametrize("lesson", [name for name, lesson in lessons.LESSONS.items() if lesson.kind == "train"])
def test_every_lessons_model_converts_both_ways_with_the_same_outputs_on_real_inputs(lesson, tmp_path):
    for source_backend, source, target in (("keras", "model.keras", "model.pt"), ("torch", "model.pt", "model.keras")):
        dual_backend.build(lesson, backend=source_backend, device="cpu").save(tmp_path / source)
        convert.convert(tmp_path / source, tmp_path / target)
        checked = convert.check(tmp_path / source, tmp_path / target, 8)
        assert checked.passed, (source_backend, checked.line())
        assert dual_backend.load_model(tmp_path / target).lesson == lesson


OPTIMIZERS = {"Adam": {}, "RMSprop": {"momentum": 0.5}, "SGD": {"momentum": 0.9, "nesterov": True}}


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
def test_training_goes_on_across_the_file_with_the_optimizers_state(optimizer, tmp_path):
    """Keras trains two epochs, saves; torch opens the file and trains one more epoch; Keras trains the same
    epoch: the same weights.  Then back: torch saves, tf.keras opens it, and both train one more."""
    rng = np.random.default_rng(0)
    x, y = rng.random((32, 8, 8, 1)).astype("float32"), rng.integers(0, 3, 32)
    # Seeded: from some starting weights Adam's m/sqrt(v) on near-zero gradients magnifies float32 rounding
    # past the tolerance on either side of the file alike, which is not what this test is about.
    dual_backend.backend_package("keras").seed(0)

    def layers():
        return [keras.Input((8, 8, 1)), keras.layers.Conv2D(4, 3, padding="same", activation="relu"),
                keras.layers.BatchNormalization(), keras.layers.MaxPooling2D(), keras.layers.Flatten(),
                keras.layers.Dense(3, activation="softmax")]

    model = defined_on("keras", layers)
    model.compile(optimizer=getattr(keras.optimizers, optimizer)(learning_rate=0.01, **OPTIMIZERS[optimizer]),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x, y, epochs=2, batch_size=8, shuffle=False, verbose=0)
    model.save(tmp_path / "keras.keras")
    on_torch = dual_backend.load_model(tmp_path / "keras.keras", backend="torch")
    for trained in (model, on_torch):
        trained.fit(x, y, epochs=1, batch_size=16, shuffle=False, verbose=0)
    # (parity's one-step tolerance: RMSprop's 1/sqrt(v + eps) magnifies float32 rounding)
    assert max_difference(model.get_weights(), on_torch.get_weights()) < parity.STEP_TOLERANCE

    on_torch.save(tmp_path / "torch.keras")
    on_keras = tf.keras.models.load_model(tmp_path / "torch.keras", safe_mode=True)
    assert int(on_keras.optimizer.iterations.numpy()) == 8 + 2  # 2 epochs of 4 steps, then 2 of 1
    on_keras.fit(x, y, epochs=1, batch_size=16, shuffle=False, verbose=0)
    model.fit(x, y, epochs=1, batch_size=16, shuffle=False, verbose=0)
    assert max_difference(model.get_weights(), on_keras.get_weights()) < parity.STEP_TOLERANCE


def test_a_second_fit_on_torch_goes_on_with_the_same_optimizer_as_in_keras():
    rng = np.random.default_rng(1)
    x, y = rng.random((32, 6)).astype("float32"), rng.integers(0, 3, 32)
    first, second = (defined_on(backend, lambda: [keras.Input((6,)), keras.layers.Dense(3, activation="softmax")])
                     for backend in ("keras", "torch"))
    second.set_weights(first.get_weights())
    for model in (first, second):
        model.compile(optimizer=keras.optimizers.Adam(learning_rate=0.05), loss="sparse_categorical_crossentropy")
        for _ in range(2):
            model.fit(x, y, epochs=1, batch_size=8, shuffle=False, verbose=0)
    assert max_difference(first.get_weights(), second.get_weights()) < 1e-6


@pytest.mark.slow
def test_a_model_trained_on_keras_and_trained_on_on_torch_lands_in_the_lessons_range(tmp_path):
    """fashion_mlp's quick profile (2 epochs of 10,000 images) split across the file: the first epoch on
    keras, the second on torch from the saved model and optimizer state; judged by the lesson's quick
    range.  Measured: 0.812-0.832 test accuracy on seeds 0-2; an untrained model ~0.10."""
    from dual_backend.run import prepare_data

    recipe = lessons.recipe("fashion_mlp")
    prepared = prepare_data(recipe, "quick")
    dual_backend.backend_package("keras").seed(0)
    model = dual_backend.build("fashion_mlp", backend="keras", device="cpu")
    model.fit(prepared.x_train, prepared.y_train, epochs=1, batch_size=32, verbose=0)
    model.save(tmp_path / "fashion_mlp.keras")
    on_torch = dual_backend.load_model(tmp_path / "fashion_mlp.keras", backend="torch")
    on_torch.fit(prepared.x_train, prepared.y_train, epochs=1, batch_size=32, verbose=0)
    loss, accuracy = on_torch.evaluate(prepared.x_test, prepared.y_test, verbose=0)
    assert accuracy in recipe.expected("quick"), (accuracy, recipe.expected("quick"))


# ---------------------------------------------------------------------- files of other Keras versions


def test_a_keras_2_h5_file_of_the_course_era_opens_on_torch_with_keras_2s_predictions():
    """``fixtures/keras2_cnn.h5`` was written by tf_keras 2.21 (Keras 2), with its predictions beside it
    (``fixtures/make_keras2_fixture.py``)."""
    model = dual_backend.load_model(FIXTURES / "keras2_cnn.h5", backend="torch")
    expected = np.load(FIXTURES / "keras2_cnn_predictions.npz")
    outputs = model.predict(expected["x"])
    assert max_difference([expected["predictions"]], [outputs]) <= 1e-5
    assert (model.loss, model.metrics) == ("sparse_categorical_crossentropy", ["accuracy"])
    assert model.optimizer_description.settings["learning_rate"] == pytest.approx(0.002)


def test_a_keras_3_h5_file_opens_on_torch(tmp_path):
    model = defined_on("keras", FORWARD_CASES["BatchNormalization of convolution maps"][0])
    model.set_weights(randomised(model))  # (builds it)
    model.keras_model.save(tmp_path / "model.h5")
    x = FORWARD_CASES["BatchNormalization of convolution maps"][1]
    on_torch = dual_backend.load_model(tmp_path / "model.h5", backend="torch")
    assert max_difference([model.predict(x)], [on_torch.predict(x)]) <= 1e-5


# ---------------------------------------------------------------------- without TensorFlow

WITHOUT_TENSORFLOW = """
import importlib.util, sys
assert importlib.util.find_spec("tensorflow") is None and importlib.util.find_spec("keras") is None
import numpy as np
from dual_backend import keras
model = keras.models.load_model(sys.argv[1])
np.save(sys.argv[2], model.predict(np.load(sys.argv[3]), verbose=0))
model.save(sys.argv[4])
print(type(model).__mro__[2].__name__)
"""
TENSORFLOW_PACKAGES = ("tensorflow", "keras", "tf_keras")


def environment_without_tensorflow(folder: Path) -> dict:
    """``PYTHONPATH`` for ``python -S``: this environment's packages, linked one by one, but TensorFlow's and
    Keras' (their modules and their installation records), and this project."""
    import site

    folder.mkdir()
    for packages in map(Path, site.getsitepackages()):
        for entry in packages.iterdir():
            if not entry.name.lower().replace("-", "_").startswith(TENSORFLOW_PACKAGES) and entry.suffix != ".pth" \
                    and not (folder / entry.name).exists():
                (folder / entry.name).symlink_to(entry)
    project = Path(dual_backend.__file__).parents[1]
    return {**os.environ, "PYTHONPATH": f"{project}{os.pathsep}{folder}", "DUAL_BACKEND": "torch"}


def test_a_keras_file_opens_and_saves_on_torch_in_an_environment_without_tensorflow(tmp_path):
    def layers():
        return [keras.Input((12, 12, 1)), keras.layers.Conv2D(4, 3, padding="same", activation="relu"),
                keras.layers.BatchNormalization(), keras.layers.Dropout(0.3), keras.layers.MaxPooling2D(),
                keras.layers.Flatten(), keras.layers.Dense(2, activation="softmax")]

    model = defined_on("keras", layers)
    model.set_weights(randomised(model))
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.save(tmp_path / "model.keras")
    x = np.random.default_rng(2).random((8, 12, 12, 1)).astype("float32")
    np.save(tmp_path / "x.npy", x)
    script = tmp_path / "no_tensorflow.py"
    script.write_text(WITHOUT_TENSORFLOW)
    done = subprocess.run([sys.executable, "-S", str(script), str(tmp_path / "model.keras"), str(tmp_path / "out.npy"),
                           str(tmp_path / "x.npy"), str(tmp_path / "again.keras")], capture_output=True, text=True,
                          env=environment_without_tensorflow(tmp_path / "site-packages"), timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "TorchModel"
    assert max_difference([model.predict(x)], [np.load(tmp_path / "out.npy")]) <= 1e-5
    again = tf.keras.models.load_model(tmp_path / "again.keras", safe_mode=True)
    assert max_difference([model.predict(x)], [again.predict(x, verbose=0)]) <= 1e-5


# ---------------------------------------------------------------------- refusals


def saved_keras_file(tmp_path, layers=None) -> Path:
    model = defined_on("keras", layers or (lambda: [keras.Input((6,)), keras.layers.Dense(3, name="hidden"),
                                                    keras.layers.Dense(2, activation="softmax", name="head")]))
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    model.save(tmp_path / "model.keras")
    return tmp_path / "model.keras"


def rewritten(path: Path, config=None, weights=None) -> Path:
    """``path`` with its config.json changed by ``config(dict)`` or its weights file by ``weights(h5py.File)``."""
    with zipfile.ZipFile(path) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    if config is not None:
        changed = json.loads(members["config.json"])
        config(changed)
        members["config.json"] = json.dumps(changed).encode()
    if weights is not None:
        buffer = io.BytesIO(members["model.weights.h5"])
        with h5py.File(buffer, "a") as stored:
            weights(stored)
        members["model.weights.h5"] = buffer.getvalue()
    out = path.with_name("changed.keras")
    with zipfile.ZipFile(out, "w") as archive:
        for name, content in members.items():
            archive.writestr(name, content)
    return out


def refused(path, backend: str = "torch") -> str:
    with pytest.raises(DualBackendError) as caught:
        dual_backend.load_model(path, backend=backend)
    assert str(path) in str(caught.value)
    return str(caught.value)


def refused_alike(path) -> str:
    """The message of a file both backends refuse, in the same words (tf.keras loads more kinds of model
    than the torch port builds, but a broken file is broken for both)."""
    message = refused(path, "torch")
    assert refused(path, "keras") == message
    return message


def test_a_lambda_layer_is_refused_by_name_and_nothing_of_it_runs(tmp_path):
    model = tf.keras.Sequential([tf.keras.Input((4,)), tf.keras.layers.Lambda(lambda t: t * 2, name="doubling")])
    model.save(tmp_path / "lambda.keras")
    message = refused(tmp_path / "lambda.keras")
    assert "'doubling'" in message and "Lambda" in message and "run as Python code" in message


def test_a_custom_layer_is_refused_as_custom_code(tmp_path):
    def custom(config):
        config["config"]["layers"][1].update(module="my_project.layers", registered_name="MyProject>Dense")

    message = refused(rewritten(saved_keras_file(tmp_path), config=custom))
    assert "custom object 'MyProject>Dense'" in message and "runs no code from a file" in message


def test_unsupported_layers_and_arguments_are_refused_naming_the_layer(tmp_path):
    model = tf.keras.Sequential([tf.keras.Input((6, 4)), tf.keras.layers.Conv1D(2, 3, name="conv")])
    model.save(tmp_path / "conv1d.keras")
    assert "layer 'conv' is a Conv1D layer" in refused(tmp_path / "conv1d.keras")
    model = tf.keras.Sequential([tf.keras.Input((6,)), tf.keras.layers.Dense(
        2, kernel_regularizer=tf.keras.regularizers.L2(0.1), name="decayed")])
    model.save(tmp_path / "regularized.keras")
    message = refused(tmp_path / "regularized.keras")
    assert "layer 'decayed'" in message and "kernel_regularizer" in message
    inputs = tf.keras.Input((6,))
    tf.keras.Model(inputs, tf.keras.layers.Dense(2)(inputs)).save(tmp_path / "functional.keras")
    assert "holds a Functional model" in refused(tmp_path / "functional.keras")


def test_a_truncated_or_foreign_file_is_refused(tmp_path):
    whole = saved_keras_file(tmp_path).read_bytes()
    (tmp_path / "truncated.keras").write_bytes(whole[:len(whole) // 2])
    assert "truncated or corrupted" in refused_alike(tmp_path / "truncated.keras")
    (tmp_path / "text.keras").write_text("not a model")
    assert "neither a .keras archive" in refused_alike(tmp_path / "text.keras")
    with zipfile.ZipFile(tmp_path / "no_weights.keras", "w") as archive:
        archive.writestr("config.json", "{}")
    assert "no model.weights.h5" in refused_alike(tmp_path / "no_weights.keras")


def test_a_missing_weight_or_a_shape_that_does_not_match_the_config_is_refused(tmp_path):
    path = saved_keras_file(tmp_path)

    def without_bias(stored):
        del stored["layers/dense/vars/1"]  # the first Dense (Keras names the groups by class and position)

    message = refused_alike(rewritten(path, weights=without_bias))
    assert "layer 'hidden' (Dense)" in message and "tampered" in message

    def wider(stored):
        del stored["layers/dense_1/vars/0"]
        stored["layers/dense_1/vars"].create_dataset("0", data=np.zeros((4, 2), np.float32))

    message = refused_alike(rewritten(path, weights=wider))
    assert "layer 'head' (Dense)" in message and "(4, 2)" in message


def test_a_weights_only_h5_file_is_refused_with_what_to_do(tmp_path):
    model = defined_on("keras", lambda: [keras.Input((6,)), keras.layers.Dense(2)])
    model.build()
    model.keras_model.save_weights(tmp_path / "model.weights.h5")
    assert "holds weights only" in refused_alike(tmp_path / "model.weights.h5")


# ---------------------------------------------------------------------- dual-backend convert


def test_convert_writes_the_other_frameworks_file_and_checks_it(tmp_path, capsys):
    dual_backend.build("fashion_cnn", backend="keras", device="cpu").save(tmp_path / "cnn.keras")
    assert main(["convert", str(tmp_path / "cnn.keras"), str(tmp_path / "cnn.pt"), "--check", "16"]) == 0
    out = capsys.readouterr().out
    assert "(keras) → " in out and "the fashion_cnn lesson's model" in out
    assert "on 16 fashion-mnist test inputs" in out and ": the same" in out
    assert main(["convert", str(tmp_path / "cnn.pt"), str(tmp_path / "cnn.h5")]) == 1
    assert "dual-backend converts IN.keras or IN.h5 → OUT.pt or OUT.ckpt, or IN.pt or IN.ckpt → OUT.keras" \
        in capsys.readouterr().err


def test_convert_check_fails_when_the_models_differ(tmp_path, capsys):
    dual_backend.build("fashion_mlp", backend="keras", device="cpu").save(tmp_path / "mlp.keras")
    assert main(["convert", str(tmp_path / "mlp.keras"), str(tmp_path / "mlp.pt")]) == 0
    model = dual_backend.load_model(tmp_path / "mlp.pt")
    model.set_weights([w + 0.01 for w in model.get_weights()])
    model.save(tmp_path / "mlp.pt")
    checked = convert.check(tmp_path / "mlp.keras", tmp_path / "mlp.pt", 16)
    assert not checked.passed and "DIFFERENT" in checked.line()
    assert checked.tolerance == parity.forward_tolerance(convert.check_inputs(model, 16)[0])


# ---------------------------------------------------------------------- save_weights / load_weights, legacy .h5


def test_weights_files_cross_between_the_backends_and_tf_keras(tmp_path):
    make_layers, x = FORWARD_CASES["BatchNormalization of convolution maps"]
    source = defined_on("keras", make_layers)
    source.set_weights(randomised(source))
    source.save_weights(tmp_path / "keras.weights.h5")
    target = defined_on("torch", make_layers)
    target.build()
    target.load_weights(tmp_path / "keras.weights.h5")
    assert max_difference(source.get_weights(), target.get_weights()) == 0
    target.set_weights(randomised(target))
    target.save_weights(tmp_path / "torch.weights.h5")
    source.keras_model.load_weights(tmp_path / "torch.weights.h5")  # tf.keras' own reader
    assert max_difference(source.get_weights(), target.get_weights()) == 0
    with pytest.raises(DualBackendError, match="must end in `.weights.h5`"):
        target.save_weights(tmp_path / "torch.h5")


@pytest.mark.parametrize("backend", ["keras", "torch"])
def test_a_weights_file_of_another_model_is_refused_naming_the_layer(backend, tmp_path):
    small = defined_on("keras", lambda: [keras.Input((6,)), keras.layers.Dense(3, name="narrow")])
    small.save_weights(tmp_path / "small.weights.h5")
    wide = defined_on(backend, lambda: [keras.Input((6,)), keras.layers.Dense(5, name="wide")])
    wide.build()
    before = wide.get_weights()
    with pytest.raises(DualBackendError, match="layer 'wide' \\(Dense\\) gets weights of shapes \\[\\(6, 3\\), "
                                               "\\(3,\\)\\] from the file, but this model's layer needs "
                                               "\\[\\(6, 5\\), \\(5,\\)\\]: the file was saved from another model"):
        wide.load_weights(tmp_path / "small.weights.h5")
    assert max_difference(before, wide.get_weights()) == 0  # nothing half-loaded


def test_load_weights_refuses_a_missing_or_broken_file_in_the_same_words_on_both_backends(tmp_path):
    (tmp_path / "broken.weights.h5").write_text("not HDF5")
    messages = {}
    for backend in ("keras", "torch"):
        model = defined_on(backend, lambda: [keras.Input((6,)), keras.layers.Dense(2)])
        model.build()
        for name in ("missing.weights.h5", "broken.weights.h5"):
            with pytest.raises(DualBackendError) as caught:
                model.load_weights(tmp_path / name)
            messages.setdefault(name, set()).add(str(caught.value))
    assert [len(found) for found in messages.values()] == [1, 1], messages
    assert "(no such file): give the path of a file model.save_weights wrote" in messages["missing.weights.h5"].pop()
    assert "is not a readable HDF5 file" in messages["broken.weights.h5"].pop()


def test_a_torch_model_saves_a_legacy_h5_file_tf_keras_loads(tmp_path):
    make_layers, x = FORWARD_CASES["Flatten of convolution maps into Dense, Dropout between"]
    model = defined_on("torch", make_layers)
    model.set_weights(randomised(model))
    model.compile(optimizer="adam", loss="mean_squared_error")
    model.save(tmp_path / "model.h5")
    on_keras = tf.keras.models.load_model(tmp_path / "model.h5", safe_mode=True)
    assert max_difference([model.predict(x)], [on_keras.predict(x, verbose=0)]) <= 1e-5
    again = dual_backend.load_model(tmp_path / "model.h5", backend="torch")
    assert max_difference(model.get_weights(), again.get_weights()) == 0 and again.loss == "mean_squared_error"


# ---------------------------------------------------------------------- a Lightning checkpoint (.ckpt)


def keras_trained_two_epochs(tmp_path, optimizer="Adam"):
    """A model Keras trained two epochs of 4 steps, saved as ``keras.keras``, and its batches."""
    # Keras' initial weights seeded: from some draws (a ReLU channel all but dead) Adam's m / sqrt(v) of
    # near-zero gradients magnifies float32 rounding past 1e-5, on torch's own fit as on a resumed Trainer.
    tf.keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x, y = rng.random((32, 8, 8, 1)).astype("float32"), rng.integers(0, 3, 32)

    def layers():
        return [keras.Input((8, 8, 1)), keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="conv"),
                keras.layers.BatchNormalization(), keras.layers.MaxPooling2D(), keras.layers.Flatten(),
                keras.layers.Dense(3, activation="softmax", name="head")]

    model = defined_on("keras", layers)
    model.compile(optimizer=getattr(keras.optimizers, optimizer)(learning_rate=0.01, **OPTIMIZERS[optimizer]),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x, y, epochs=2, batch_size=8, shuffle=False, verbose=0)
    model.save(tmp_path / "keras.keras")
    return model, x, y


def lightning_trainer(**settings):
    import lightning as L

    return L.Trainer(accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
                     enable_model_summary=False, **settings)


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
def test_a_keras_file_as_a_lightning_checkpoint_resumes_in_a_users_trainer_as_keras_trains_on(optimizer, tmp_path):
    """Keras trains two epochs and saves; convert writes a .ckpt; a user's own Trainer resumes from it (the
    module's weights and optimizer reset first, so that both come from the checkpoint) and trains one more
    epoch over the same batches; Keras trains the same epoch: the same weights."""
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    model, x, y = keras_trained_two_epochs(tmp_path, optimizer)
    convert.convert(tmp_path / "keras.keras", tmp_path / "model.ckpt")
    checkpoint = torch.load(tmp_path / "model.ckpt", weights_only=True)
    assert (checkpoint["epoch"], checkpoint["global_step"]) == (0, 8)
    names = list(checkpoint["state_dict"])
    assert names[:2] + names[-2:] == ["conv.kernel", "conv.bias", "head.kernel", "head.bias"]

    on_torch = dual_backend.load_model(tmp_path / "keras.keras", backend="torch")
    on_torch.set_weights([np.zeros_like(w) for w in on_torch.get_weights()])
    on_torch.compile(optimizer=on_torch.optimizer_description, loss="sparse_categorical_crossentropy")
    batches = DataLoader(TensorDataset(torch.from_numpy(x), torch.from_numpy(y)), batch_size=8, shuffle=False)
    trainer = lightning_trainer(max_epochs=1, default_root_dir=tmp_path)
    trainer.fit(on_torch.to_lightning(), batches, ckpt_path=tmp_path / "model.ckpt")
    model.fit(x, y, epochs=1, batch_size=8, shuffle=False, verbose=0)
    assert trainer.global_step == 8 + 4
    assert max_difference(model.get_weights(), on_torch.get_weights()) < 1e-5


def test_a_lightning_checkpoint_opens_with_its_optimizers_state_and_converts_back_to_keras(monkeypatch, tmp_path):
    model, x, y = keras_trained_two_epochs(tmp_path)
    assert main(["convert", str(tmp_path / "keras.keras"), str(tmp_path / "model.ckpt"), "--check", "8"]) == 0
    monkeypatch.setenv("DUAL_BACKEND", "torch")
    on_torch = keras.models.load_model(tmp_path / "model.ckpt")
    assert on_torch.backend == "torch" and on_torch.optimizer_description.settings["learning_rate"] == 0.01
    assert max_difference(model.get_weights(), on_torch.get_weights()) == 0

    convert.convert(tmp_path / "model.ckpt", tmp_path / "back.keras")
    on_keras = tf.keras.models.load_model(tmp_path / "back.keras", safe_mode=True)
    assert int(on_keras.optimizer.iterations.numpy()) == 8
    for trained in (model, on_torch, on_keras):
        trained.fit(x, y, epochs=1, batch_size=16, shuffle=False, verbose=0)
    assert max_difference(model.get_weights(), on_torch.get_weights()) < 1e-5
    assert max_difference(model.get_weights(), on_keras.get_weights()) < 1e-5


def test_a_lightning_checkpoint_of_another_module_is_refused_naming_the_file(tmp_path, capsys):
    import lightning as L
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    class Regression(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.linear = torch.nn.Linear(4, 1)

        def training_step(self, batch, batch_idx):
            return torch.nn.functional.mse_loss(self.linear(batch[0]), batch[1])

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    trainer = lightning_trainer(max_epochs=1, default_root_dir=tmp_path)
    trainer.fit(Regression(), DataLoader(TensorDataset(torch.ones(4, 4), torch.ones(4, 1)), batch_size=2))
    trainer.save_checkpoint(tmp_path / "regression.ckpt")
    message = refused(tmp_path / "regression.ckpt")
    assert "a Lightning checkpoint that dual-backend did not write" in message
    assert main(["convert", str(tmp_path / "regression.ckpt"), str(tmp_path / "regression.keras")]) == 1
    assert str(tmp_path / "regression.ckpt") in capsys.readouterr().err


def test_a_truncated_lightning_checkpoint_is_refused_naming_the_file(tmp_path):
    keras_trained_two_epochs(tmp_path)
    convert.convert(tmp_path / "keras.keras", tmp_path / "model.ckpt")
    whole = (tmp_path / "model.ckpt").read_bytes()
    (tmp_path / "truncated.ckpt").write_bytes(whole[:len(whole) // 2])
    assert "is not a readable Lightning checkpoint" in refused(tmp_path / "truncated.ckpt")


def test_a_tf_keras_h5_file_compiled_with_a_loss_by_name_opens_on_both_backends(tmp_path):
    model = tf.keras.Sequential([tf.keras.Input((28, 28)), tf.keras.layers.Flatten(),
                                 tf.keras.layers.Dense(10, activation="softmax")])
    model.compile("rmsprop", "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.save(tmp_path / "legacy.h5")
    for backend in ("keras", "torch"):
        loaded = dual_backend.load_model(tmp_path / "legacy.h5", backend=backend)
        assert (loaded.loss, loaded.from_logits) == ("sparse_categorical_crossentropy", False)
    assert main(["convert", str(tmp_path / "legacy.h5"), str(tmp_path / "legacy.pt"), "--check", "4"]) == 0


def test_convert_to_a_folder_or_under_a_file_is_refused_and_writes_nothing(tmp_path, capsys):
    dual_backend.build("hello_world", backend="keras", device="cpu").save(tmp_path / "line.keras")
    (tmp_path / "folder.pt").mkdir()
    assert main(["convert", str(tmp_path / "line.keras"), str(tmp_path / "folder.pt")]) == 1
    assert "is a folder: give OUT as a file path" in capsys.readouterr().err
    assert main(["convert", str(tmp_path / "line.keras"), str(tmp_path / "line.keras" / "x.pt")]) == 1
    error = capsys.readouterr().err
    assert "Cannot write" in error and "nothing was written" in error and "Traceback" not in error
    assert sorted(p.name for p in tmp_path.iterdir()) == ["folder.pt", "line.keras"]
