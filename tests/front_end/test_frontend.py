"""The front end: lazy imports, names checked with the valid ones listed, summaries equal to LESSONS.md."""

import subprocess
import sys

import pytest

import dual_backend
from dual_backend import cli, lessons
from dual_backend.errors import DualBackendError
from dual_backend.formats import backend_of_model_file
from dual_backend.model import SpeedUps, steady_seconds
from dual_backend.run import RunSettings

EVERY_MODEL = [(lesson.name, variant) for lesson in lessons.LESSONS.values() if lesson.kind == "train"
               for variant in ["default", *lesson.variants]]


def test_importing_dual_backend_imports_neither_framework():
    code = "import sys, dual_backend, dual_backend.cli, dual_backend.run; " \
           "print(sorted(m for m in ('tensorflow', 'torch', 'keras', 'lightning') if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_the_readme_reaches_the_data_loaders_through_the_package_alone():
    code = "import sys, dual_backend as db; print(callable(db.data.load_fashion_mnist), 'torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "True False"


@pytest.mark.parametrize("backend", ["keras", "torch"])
def test_choosing_a_backend_imports_only_that_framework(backend):
    other = {"keras": "torch", "torch": "tensorflow"}[backend]
    code = f"import sys, dual_backend; dual_backend.build('fashion_mlp', backend='{backend}'); print('{other}' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip().splitlines()[-1] == "False"


@pytest.mark.parametrize("lesson, variant", EVERY_MODEL)
def test_summary_totals_equal_lessons_md_on_both_backends(lesson, variant, capsys):
    expected = lessons.recipe(lesson, variant).params
    for backend in ("keras", "torch"):
        model = dual_backend.build(lesson, backend=backend, variant=variant, device="cpu")
        assert model.count_params() == expected, backend
        model.summary()
        assert f"Total params: {expected:,}" in capsys.readouterr().out


def test_summaries_show_the_same_layers_and_shapes_on_both_backends():
    keras_rows = dual_backend.build("fashion_mlp", backend="keras", device="cpu").layer_rows()
    torch_rows = dual_backend.build("fashion_mlp", backend="torch", device="cpu").layer_rows()
    assert [(kind, shape, params) for _, kind, shape, params in keras_rows] == \
           [(kind, shape, params) for _, kind, shape, params in torch_rows]


def test_unknown_lesson_lists_the_valid_ones():
    with pytest.raises(DualBackendError, match="Valid lessons: hello_world, fashion_mlp, mnist_callback"):
        dual_backend.build("fashion_mlpp")


def test_unknown_variant_lists_the_valid_ones():
    with pytest.raises(DualBackendError, match="Valid variants: default, width_512"):
        dual_backend.build("fashion_mlp", variant="width_256")


def test_unknown_option_lists_the_valid_ones():
    with pytest.raises(DualBackendError, match="Valid options: hidden_units, extra_hidden_units"):
        dual_backend.build("fashion_mlp", hidden=512)


def test_unknown_backend_lists_the_valid_ones():
    with pytest.raises(DualBackendError, match="Valid backends: keras, torch"):
        dual_backend.build("fashion_mlp", backend="jax")


@pytest.mark.parametrize("backend", ["keras", "torch"])
def test_unknown_optimizer_loss_and_metric_list_the_valid_ones(backend):
    model = dual_backend.build("fashion_mlp", backend=backend, device="cpu")
    with pytest.raises(DualBackendError, match="Valid optimizers: adam, sgd, rmsprop"):
        model.compile(optimizer="adamw", loss="sparse_categorical_crossentropy")
    with pytest.raises(DualBackendError, match="Valid losses"):
        model.compile(optimizer="adam", loss="hinge")
    with pytest.raises(DualBackendError, match="Valid metrics: accuracy, acc"):
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["auc"])


def test_model_options_change_the_model():
    model = dual_backend.build("fashion_mlp", backend="torch", device="cpu", hidden_units=512)
    assert model.count_params() == 407_050


@pytest.mark.parametrize("argv, words", [
    (["run", "nope"], "invalid choice: 'nope'"),
    (["run", "fashion_mlp", "--variant", "nope"], "Valid variants"),
    (["run", "fashion_mlp", "--option", "depth=3"], "Valid options"),
    (["run", "fashion_mlp", "--backend", "jax"], "invalid choice: 'jax'"),
    (["run", "fashion_mlp", "--flag"], "unrecognized arguments: --flag"),
])
def test_cli_rejects_unknown_names_with_exit_code_2_and_the_valid_ones(argv, words, capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(argv)
    assert exit_.value.code == 2
    assert words in capsys.readouterr().err


def test_cli_list_shows_every_lesson_and_variant(capsys):
    assert cli.main(["list"]) == 0
    out = capsys.readouterr().out
    for lesson, variant in EVERY_MODEL:
        assert lesson in out and variant in out


def test_cli_summary_prints_the_keras_style_table(capsys):
    assert cli.main(["summary", "fashion_mlp", "--backend", "torch", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "dense_1 (Dense)" in out and out.rstrip().splitlines()[-4] == "Total params: 101,770"


def test_steady_seconds_is_the_median_of_the_epochs_after_each_runs_first():
    assert steady_seconds([9.0, 1.0, 5.0, 2.0]) == 2.0
    assert steady_seconds([9.0, 1.0], [8.0, 3.0, 2.0]) == 2.0  # bench's repeats, compare's seeds
    assert steady_seconds([4.0]) == 4.0  # one epoch: nothing else to go by
    assert steady_seconds([]) == 0.0


def test_run_settings_come_back_whole_from_their_command_line():
    settings = RunSettings("fashion_mlp", "torch", variant="width_512", epochs=2, profile="quick", seed=3,
                           device="cpu", options={"hidden_units": 256}, init_from="keras", same_order=True,
                           devices=2, strategy="ddp", speedups=SpeedUps(precision="bf16", channels_last=True),
                           floatx="float64")
    assert cli.run_settings(cli.parser().parse_args(settings.argv()), "torch") == settings
    assert cli.run_settings(cli.parser().parse_args(RunSettings("hello_world", "keras").argv()), "keras") \
        == RunSettings("hello_world", "keras")


def test_a_saved_models_backend_is_read_from_its_file_format():
    assert [backend_of_model_file(f"OUT/{b}/model{dual_backend.FILE_FORMATS[b].model}") for b in ("keras", "torch")] \
        == ["keras", "torch"]
    with pytest.raises(DualBackendError, match=r"Cannot tell the backend of model\.npz: expected a \.keras \(keras\) "
                                               r"or \.pt \(torch\) file\."):
        dual_backend.load_model("model.npz")
    for backend in ("keras", "torch"):  # Keras' legacy .h5 opens on either; a missing one is said so on both
        with pytest.raises(DualBackendError, match=r"^No model at model\.h5 \(no such file\): give the path of a "
                                                   r"file model\.save wrote\.$"):
            dual_backend.load_model("model.h5", backend=backend)
