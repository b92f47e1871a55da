"""``dual_backend.keras`` initialisers: each draws, on both backends, what Keras 3's formula says, and keeps its
name through a ``.keras`` file; what neither backend draws alike is refused in the same words on both.

The formula is Keras 3's ``VarianceScaling`` (``keras/src/initializers/random_initializers.py``): scale / n, n the
fan its mode names as ``compute_fans`` counts it on Keras' shape; uniform within ±sqrt(3·scale/n), or a normal cut
at ±2σ with σ = sqrt(scale/n) / 0.87962566103423978, whose draws then have standard deviation sqrt(scale/n).  The
keras backend's arrays are checked against the same formula, so it is checked against tf.keras itself.

Sampling tolerance: with N independent draws of standard deviation s, the sample mean's standard error is s/√N and
the sample standard deviation's relative standard error is sqrt((κ − 1) / 4N), κ the kurtosis: 1.8 for a uniform,
about 2.4 for a normal cut at ±2σ, at most 3, so at most 1/sqrt(2N).  Each check allows 5 standard errors: a
correct draw fails it about once in 10⁶.  The subtlest error looked for, a truncated normal without Keras'
correction (0.88 of the standard deviation), is 33 standard errors on the smallest kernel (36,864 values); on the
1,024 biases of a Conv2D it is 5.4, just outside the 5 allowed, so the kernels are what rule it out.
"""

import json
import math
import zipfile

import numpy as np
import pytest

import dual_backend
from dual_backend import keras, keras_file
from dual_backend.errors import DualBackendError
from dual_backend.keras.initializers import VARIANCE_SCALING
from tests.front_end.keras_namespace.support import BACKENDS, defined_on

STANDARD_ERRORS = 5
# Large enough layers: a Dense kernel of 32 x 4096 and 4096 biases; a Conv2D kernel of 3 x 3 x 4 x 1024, 1024 biases.
LAYERS = {
    "Dense": (lambda **initializers: keras.layers.Dense(4096, **initializers), (32,)),
    "Conv2D": (lambda **initializers: keras.layers.Conv2D(1024, 3, **initializers), (5, 5, 4)),
}


def fans(shape):
    """Keras' ``compute_fans``, written out: (inputs, units) for a Dense kernel, channels times the window for a
    Conv2D kernel (height, width, in, out), the length twice for a bias."""
    if len(shape) == 1:
        return shape[0], shape[0]
    window = math.prod(shape[:-2])
    return shape[-2] * window, shape[-1] * window


def drawn(backend, layer, name):
    make, input_shape = LAYERS[layer]
    model = defined_on(backend, lambda: [keras.Input(input_shape),
                                         make(kernel_initializer=name, bias_initializer=name)])
    return model.layers[0].get_weights()  # Keras' layout on both backends


def assert_drawn_as_keras_says(weight: np.ndarray, name: str) -> None:
    values = weight.astype(np.float64).ravel()
    if name in ("zeros", "ones"):
        assert np.all(values == (name == "ones"))
        return
    scale, mode, distribution = VARIANCE_SCALING[name]
    fan_in, fan_out = fans(weight.shape)
    n = {"fan_in": fan_in, "fan_avg": (fan_in + fan_out) / 2}[mode]
    std = math.sqrt(scale / n)
    bound = math.sqrt(3 * scale / n) if distribution == "uniform" else 2 * std / 0.87962566103423978
    assert abs(values.mean()) <= STANDARD_ERRORS * std / math.sqrt(values.size)
    assert values.std() == pytest.approx(std, rel=STANDARD_ERRORS / math.sqrt(2 * values.size))
    assert np.abs(values).max() <= bound * (1 + 1e-6)  # float32 rounding of a draw at the bound


@pytest.mark.parametrize("name", [*VARIANCE_SCALING, "zeros", "ones"])
@pytest.mark.parametrize("layer", LAYERS)
@pytest.mark.parametrize("backend", BACKENDS)
def test_kernel_and_bias_are_drawn_as_keras_formula_says(backend, layer, name):
    kernel, bias = drawn(backend, layer, name)
    assert_drawn_as_keras_says(kernel, name)
    assert_drawn_as_keras_says(bias, name)


def test_the_formulas_tell_the_initialisers_apart():
    """The checks above would catch a wrong distribution: he_normal's draws are not glorot_uniform's, nor an
    untruncated normal of the same deviation, nor one cut without Keras' correction."""
    rng = np.random.default_rng(0)
    shape, std = (32, 4096), math.sqrt(2 / 32)
    untruncated = rng.normal(0, std, size=shape)
    draws = rng.normal(0, std, size=2 * math.prod(shape))
    uncorrected = draws[np.abs(draws) < 2 * std][:math.prod(shape)].reshape(shape)
    for wrong in (untruncated, uncorrected, rng.uniform(-math.sqrt(6 / 4128), math.sqrt(6 / 4128), size=shape)):
        with pytest.raises(AssertionError):
            assert_drawn_as_keras_says(wrong.astype(np.float32), "he_normal")


@pytest.mark.parametrize("backend", BACKENDS)
def test_names_class_names_classes_and_instances_mean_the_same_initialiser(backend):
    dual_backend.set_backend(backend)
    given = ("he_normal", "HeNormal", keras.initializers.HeNormal, keras.initializers.HeNormal())
    for initializer in given:
        assert keras.layers.Dense(3, kernel_initializer=initializer).arguments["kernel_initializer"] == "he_normal"
    assert keras.layers.Conv2D(3, 2, bias_initializer="one").arguments["bias_initializer"] == "ones"


def test_a_he_normal_model_trains_on_torch_and_its_keras_file_loads_in_tf_keras_with_he_normal(tmp_path):
    tf = pytest.importorskip("tensorflow")
    model = defined_on("torch", lambda: [keras.Input((6, 6, 1)),
                                         keras.layers.Conv2D(4, 3, activation="relu", kernel_initializer="he_normal"),
                                         keras.layers.Flatten(),
                                         keras.layers.Dense(3, kernel_initializer=keras.initializers.LecunNormal(),
                                                            bias_initializer="ones")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    before = model.get_weights()
    rng = np.random.default_rng(0)
    model.fit(rng.random((8, 6, 6, 1), dtype=np.float32), rng.integers(0, 3, 8), epochs=1, batch_size=8, verbose=0)
    assert any(not np.array_equal(a, b) for a, b in zip(before, model.get_weights()))
    model.save(tmp_path / "model.keras")

    with zipfile.ZipFile(tmp_path / "model.keras") as archive:
        layers = json.loads(archive.read("config.json"))["config"]["layers"][1:]
    initializers = [(layer["config"]["kernel_initializer"]["class_name"], layer["config"]["bias_initializer"]
                     ["class_name"]) for layer in layers if "kernel_initializer" in layer["config"]]
    assert initializers == [("HeNormal", "Zeros"), ("LecunNormal", "Ones")]
    on_keras = tf.keras.models.load_model(tmp_path / "model.keras", safe_mode=True)
    assert type(on_keras.layers[0].kernel_initializer).__name__ == "HeNormal"
    assert all(np.array_equal(a, b) for a, b in zip(on_keras.get_weights(), model.get_weights()))
    read = [arguments for _, arguments, _ in keras_file.read_definition(tmp_path / "model.keras")["layers"]]
    assert (read[0]["kernel_initializer"], read[2]["kernel_initializer"], read[2]["bias_initializer"]) == (
        "he_normal", "lecun_normal", "ones")


def test_a_keras_file_with_an_initialiser_neither_backend_draws_opens_with_keras_default_in_its_place(tmp_path):
    tf = pytest.importorskip("tensorflow")
    tf.keras.Sequential([tf.keras.Input((4,)), tf.keras.layers.Dense(3, kernel_initializer="orthogonal",
                                                                     bias_initializer="he_uniform")]).save(
        tmp_path / "model.keras")
    (_, arguments, _), = keras_file.read_definition(tmp_path / "model.keras")["layers"]
    assert (arguments["kernel_initializer"], arguments["bias_initializer"]) == ("glorot_uniform", "he_uniform")
    assert dual_backend.load_model(tmp_path / "model.keras", backend="torch").predict(np.ones((1, 4))).shape == (1, 3)


def my_initializer(shape, dtype=None):
    return np.zeros(shape, dtype)


REFUSED = {
    "'orthogonal'": lambda: keras.layers.Dense(3, kernel_initializer="orthogonal"),
    "a function": lambda: keras.layers.Conv2D(3, 2, bias_initializer=my_initializer),
    "keras.initializers.Orthogonal": lambda: keras.initializers.Orthogonal(),
    "a seed": lambda: keras.layers.Dense(3, kernel_initializer=keras.initializers.HeNormal(seed=1)),
}


@pytest.mark.parametrize("case", REFUSED)
def test_what_neither_backend_draws_alike_is_refused_in_the_same_words_on_both(case):
    messages = []
    for backend in BACKENDS:
        dual_backend.set_backend(backend)
        with pytest.raises(DualBackendError) as refused:
            REFUSED[case]()
        messages.append(str(refused.value))
    assert messages[0] == messages[1]
    assert "not supported by dual-backend on either backend" in messages[0]
