"""``dual-backend parity --model FILE``: a saved model of your own, built on both backends from its file.

The file is what ``model.save`` writes for a ``dual_backend.keras`` model on either backend (a ``.keras``
zip, whose config.json is the definition, or a ``.pt`` with it in the checkpoint); the report
is the one ``dual-backend parity LESSON`` prints, exit 1 above the tolerances.
"""

import numpy as np
import pytest

import dual_backend
from dual_backend import cli, keras, parity
from dual_backend.keras import config

SUFFIXES = {"keras": ".keras", "torch": ".pt"}
_rng = np.random.default_rng(0)


def saved_model(backend, tmp_path, make_layers, x, y, **compiled):
    with config.defining_on(backend):
        model = keras.Sequential(make_layers())
    model.compile(**compiled)
    model.fit(x, y, epochs=1, batch_size=16, verbose=0)  # weights away from their initial draw
    path = tmp_path / f"mine{SUFFIXES[backend]}"
    model.save(path)
    return path


def fashion_cnn_of_my_own():
    return [keras.layers.Conv2D(4, 3, activation="relu", input_shape=(28, 28, 1)), keras.layers.MaxPooling2D(2),
            keras.layers.Flatten(), keras.layers.Dense(10, activation="softmax")]


def saved_fashion_cnn(backend, tmp_path):
    x, y = _rng.random((32, 28, 28, 1)).astype("float32"), _rng.integers(0, 10, 32)
    return saved_model(backend, tmp_path, fashion_cnn_of_my_own, x, y,
                       optimizer=keras.optimizers.SGD(0.05, momentum=0.5), loss="sparse_categorical_crossentropy",
                       metrics=["accuracy"])


@pytest.mark.parametrize("backend", dual_backend.BACKENDS)
def test_parity_of_a_saved_model_of_your_own_on_the_course_images_its_shape_takes(backend, tmp_path, capsys):
    path = saved_fashion_cnn(backend, tmp_path)
    assert cli.main(["parity", "--model", str(path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == (f"parity of {path} (1000 fashion_mnist test images, as lesson fashion_cnn takes them), "
                        "keras and torch on the CPU, float32")
    assert [line.split(":")[0] for line in lines[1:]] == [
        "ok    forward keras → torch on 1000 inputs", "ok    forward torch → keras on 1000 inputs",
        "ok    one SGD(learning_rate=0.05, momentum=0.5, nesterov=False) step on 32 samples",
        "3 of 3 checks within tolerance"]


def test_parity_of_a_model_file_takes_the_optimizers_asked_for(tmp_path, capsys):
    assert cli.main(["parity", "--model", str(saved_fashion_cnn("torch", tmp_path)),
                     "--optimizer", "adam", "--optimizer", "rmsprop"]) == 0
    out = capsys.readouterr().out
    assert "ok    one adam step on 32 samples" in out and "ok    one rmsprop step on 32 samples" in out


def test_parity_of_a_model_whose_shape_no_course_data_set_has_uses_seeded_random_inputs(tmp_path, capsys):
    x, y = _rng.random((32, 6)).astype("float32"), _rng.random((32, 2)).astype("float32")
    path = saved_model("keras", tmp_path, lambda: [keras.layers.Dense(5, activation="relu", input_shape=(6,)),
                                                   keras.layers.BatchNormalization(), keras.layers.Dense(2)],
                       x, y, optimizer="sgd", loss="mse")
    assert cli.main(["parity", "--model", str(path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "(1000 seeded random inputs in [0, 1) of shape (6,))" in lines[0]
    # Keras' config.json records the optimizer compile made from "sgd", with its settings
    assert lines[3].startswith("ok    one SGD(learning_rate=0.01, momentum=0.0, nesterov=False) step on 32 samples: "
                               "weights and moving statistics")


def test_parity_of_a_model_file_exits_1_above_the_tolerance(tmp_path, capsys, monkeypatch):
    path = saved_fashion_cnn("keras", tmp_path)
    monkeypatch.setattr(parity, "FORWARD_TOLERANCE", 0.0)  # float32 outputs of two frameworks differ somewhat
    assert cli.main(["parity", "--model", str(path), "--optimizer", "sgd"]) == 1
    out = capsys.readouterr().out
    assert "FAIL  forward keras → torch" in out and out.rstrip().endswith("SOME FAILED")


def test_parity_of_a_lesson_file_points_to_the_lesson_command(tmp_path, capsys):
    path = tmp_path / "lesson.pt"
    dual_backend.build("fashion_mlp", backend="torch", variant="width_512", device="cpu").save(path)
    assert cli.main(["parity", "--model", str(path)]) == 1
    assert capsys.readouterr().err == (
        f"error: {path} holds the 'fashion_mlp' lesson's model, not a model of your own: its parity is "
        "`dual-backend parity fashion_mlp --variant width_512`.\n")


@pytest.mark.parametrize("name, content, words", [
    ("missing.pt", None, "No model at {path}: give a file that model.save wrote (a .keras (keras) or .pt (torch) "
                         "file)."),
    ("weights.npz", b"", "Cannot tell the backend of {path}: expected a .keras (keras) or .pt (torch) file."),
    ("weights.h5", b"", "{path} is neither a .keras archive (a zip) nor a legacy Keras .h5 file: it is truncated, "
                        "corrupted or of another kind. Save the model again with model.save(...)."),
    ("notes.pt", b"not a checkpoint", "{path} is not a readable dual-backend torch checkpoint"),
])
def test_parity_of_a_file_that_holds_no_model_says_what_was_expected(name, content, words, tmp_path, capsys):
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    assert cli.main(["parity", "--model", str(path)]) == 1
    assert capsys.readouterr().err.startswith("error: " + words.format(path=path))


@pytest.mark.parametrize("argv, words", [
    (["parity"], "parity takes a LESSON or --model FILE"),
    (["parity", "fashion_mlp", "--model", "mine.pt"], "parity takes a LESSON or --model FILE"),
    (["parity", "--model", "mine.pt", "--steps", "5"], "--steps is for lessons"),
])
def test_parity_takes_a_lesson_or_a_model_file_with_exit_code_2(argv, words, capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(argv)
    assert exit_.value.code == 2 and words in capsys.readouterr().err
