"""``dual_backend.keras``: input shapes, layers and summaries; forward parity layer by layer; optimizer steps against tf.keras."""


import numpy as np
import pytest

import dual_backend
from dual_backend import keras
from dual_backend.errors import DualBackendError
from dual_backend.keras.optimizers import OldSpellingWarning
from tests.front_end.keras_namespace.support import BACKENDS, EVEN_IMAGES, FEATURES, IMAGES, defined_on, max_difference, twins

_rng = np.random.default_rng(0)


# ---------------------------------------------------------------------- building: input shapes, layers, summary


def mlp_layers(**first):
    return [keras.layers.Flatten(**first), keras.layers.Dense(16, activation="relu"),
            keras.layers.Dense(10, activation="softmax")]


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_input_shape_comes_from_input_from_input_shape_or_from_build(backend):
    models = [defined_on(backend, lambda: [keras.Input((28, 28)), *mlp_layers()]),
              defined_on(backend, lambda: mlp_layers(input_shape=(28, 28))),
              defined_on(backend, mlp_layers)]
    models[2].build((None, 28, 28))
    for model in models:
        assert model.count_params() == 12_730
        assert model.input_shape == (None, 28, 28) and model.output_shape == (None, 10)


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_model_without_input_shape_is_built_by_its_first_fit_as_in_keras(backend):
    model = defined_on(backend, mlp_layers)
    with pytest.raises(DualBackendError, match="has not yet been built: its input shape is unknown"):
        model.summary()
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    x, y = _rng.random((64, 28, 28)).astype("float32"), _rng.integers(0, 10, 64)
    history = model.fit(x, y, epochs=1, verbose=0)
    assert list(history.history) == ["loss", "accuracy"]
    assert model.count_params() == 12_730
    with pytest.raises(DualBackendError, match="already built: add every layer before"):
        model.add(keras.layers.Dense(3))


def test_layers_have_their_names_output_shapes_and_the_same_weights_on_both_backends():
    def layers():
        return [keras.Input((12, 12, 1)), keras.layers.Conv2D(4, 3, activation="relu"),
                keras.layers.MaxPooling2D(), keras.layers.Flatten(), keras.layers.Dense(5, name="classifier")]

    keras_model, torch_model = twins(layers)
    assert [layer.name for layer in keras_model.keras_model.layers] == [layer.name for layer in keras_model.layers]
    assert torch_model.module.layer_names == [layer.name for layer in torch_model.layers]
    assert keras_model.layers[0].name.startswith("conv2d") and keras_model.layers[-1].name == "classifier"
    for keras_layer, torch_layer in zip(keras_model.layers, torch_model.layers, strict=True):
        assert keras_layer.output_shape == torch_layer.output_shape
        assert keras_layer.count_params() == torch_layer.count_params()
        for keras_array, torch_array in zip(keras_layer.get_weights(), torch_layer.get_weights(), strict=True):
            np.testing.assert_array_equal(keras_array, torch_array)
    assert [layer.output_shape for layer in keras_model.layers] == \
        [(None, 10, 10, 4), (None, 5, 5, 4), (None, 100), (None, 5)]
    assert keras_model.get_layer("classifier") is keras_model.layers[-1]


def test_summary_is_the_same_table_on_both_backends():
    def layers():
        return [keras.Input((28, 28)), keras.layers.Flatten(name="flat"), keras.layers.Dense(32, name="hidden"),
                keras.layers.BatchNormalization(name="norm"), keras.layers.Dense(10, name="out")]

    tables = []
    for backend in BACKENDS:
        lines = []
        defined_on(backend, layers, name="same").summary(print_fn=lines.append)
        tables.append(lines[0])
    assert tables[0] == tables[1]
    assert "Total params: 25,578" in tables[0] and "Non-trainable params: 64" in tables[0]


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_layer_sets_its_own_weights_in_keras_layout(backend):
    model = defined_on(backend, lambda: [keras.Input((4,)), keras.layers.Dense(3)])
    kernel, bias = _rng.normal(size=(4, 3)).astype("float32"), np.arange(3, dtype="float32")
    model.layers[0].set_weights([kernel, bias])
    np.testing.assert_array_equal(model.get_weights()[0], kernel)
    np.testing.assert_allclose(model.predict(np.eye(4, dtype="float32")), kernel + bias, rtol=1e-6)


# ---------------------------------------------------------------------- forward parity, layer by layer


FORWARD_CASES = {
    **{f"Dense activation={name}": (lambda name=name: [keras.Input((6,)), keras.layers.Dense(5, activation=name)],
                                    FEATURES)
       for name in ("relu", "sigmoid", "softmax", "tanh", "selu", "elu", "linear", None)},
    "Dense activation=keras.activations.relu": (
        lambda: [keras.Input((6,)), keras.layers.Dense(5, activation=keras.activations.relu)], FEATURES),
    "Dense on each row (no Flatten)": (lambda: [keras.Input((13, 13, 3)), keras.layers.Dense(4)], IMAGES),
    "Conv2D 3x3": (lambda: [keras.Input((13, 13, 3)), keras.layers.Conv2D(4, 3, activation="relu")], IMAGES),
    "Dense use_bias=False": (lambda: [keras.Input((6,)), keras.layers.Dense(5, use_bias=False)], FEATURES),
    "Conv2D 3x3 use_bias=False": (lambda: [keras.Input((13, 13, 3)), keras.layers.Conv2D(4, 3, use_bias=False)],
                                  IMAGES),
    "Conv2D 2x3 strides 2": (lambda: [keras.Input((13, 13, 3)), keras.layers.Conv2D(4, (2, 3), strides=2)], IMAGES),
    "MaxPooling2D 2x2 on odd sizes": (lambda: [keras.Input((13, 13, 3)), keras.layers.MaxPooling2D()], IMAGES),
    "MaxPooling2D 3x3 strides 2": (lambda: [keras.Input((13, 13, 3)), keras.layers.MaxPooling2D(3, strides=2)],
                                   IMAGES),
    **{f"Conv2D {k}x{k} padding='same' strides {stride} on {size}x{size}": (
        lambda k=k, stride=stride, size=size: [keras.Input((size, size, 3)),
                                               keras.layers.Conv2D(4, k, strides=stride, padding="same")],
        IMAGES if size == 13 else EVEN_IMAGES)
       for k in (2, 3) for stride in (1, 2) for size in (13, 12)},
    **{f"MaxPooling2D {k}x{k} padding='same' strides {stride} on {size}x{size}": (
        lambda k=k, stride=stride, size=size: [keras.Input((size, size, 3)),
                                               keras.layers.MaxPooling2D(k, strides=stride, padding="same")],
        (IMAGES if size == 13 else EVEN_IMAGES) - 0.5)  # negative values: the padding must never win
       for k in (2, 3) for stride in (1, 2) for size in (13, 12)},
    **{f"AveragePooling2D {k}x{k} padding={padding!r} strides {stride} on {size}x{size}": (
        lambda k=k, stride=stride, size=size, padding=padding: [
            keras.Input((size, size, 3)), keras.layers.AveragePooling2D(k, strides=stride, padding=padding)],
        IMAGES if size == 13 else EVEN_IMAGES)
       for k in (2, 3) for stride in (1, 2) for size in (13, 12) for padding in ("valid", "same")},
    "GlobalAveragePooling2D after Conv2D": (
        lambda: [keras.Input((13, 13, 3)), keras.layers.Conv2D(4, 3), keras.layers.GlobalAveragePooling2D(),
                 keras.layers.Dense(2)], IMAGES),
    "Reshape flat inputs into images for Conv2D": (
        lambda: [keras.Input((507,)), keras.layers.Reshape((13, 13, 3)), keras.layers.Conv2D(4, 3),
                 keras.layers.Reshape((-1,)), keras.layers.Dense(2)], IMAGES.reshape(16, -1)),
    "Reshape of convolution maps into rows": (
        lambda: [keras.Input((13, 13, 3)), keras.layers.Conv2D(4, 3), keras.layers.Reshape((11, 44))], IMAGES),
    "Rescaling(1/255, offset=-0.5) before Conv2D": (
        lambda: [keras.Input((13, 13, 3)), keras.layers.Rescaling(1 / 255, offset=-0.5), keras.layers.Conv2D(4, 3)],
        IMAGES * 255),
    "Flatten of convolution maps into Dense, Dropout between": (
        lambda: [keras.Input((13, 13, 3)), keras.layers.Conv2D(4, 3), keras.layers.Flatten(),
                 keras.layers.Dropout(0.5), keras.layers.Dense(3)], IMAGES),
    "BatchNormalization of features": (
        lambda: [keras.Input((6,)), keras.layers.BatchNormalization(momentum=0.9, epsilon=1e-2)], FEATURES),
    "BatchNormalization of convolution maps": (
        lambda: [keras.Input((13, 13, 3)), keras.layers.Conv2D(4, 3), keras.layers.BatchNormalization()], IMAGES),
    "Dropout (identity outside training)": (lambda: [keras.Input((6,)), keras.layers.Dropout(0.3)], FEATURES),
    "AlphaDropout (identity outside training)": (
        lambda: [keras.Input((6,)), keras.layers.AlphaDropout(0.3)], FEATURES),
    "Activation softmax head": (lambda: [keras.Input((6,)), keras.layers.Dense(4), keras.layers.Activation("softmax")],
                                FEATURES),
}


def randomised(model):
    """Weights away from the initial ones (BatchNormalization's statistics too: variances positive)."""
    return [(np.abs(w) + 0.5 if w.ndim == 1 and i % 4 == 3 else w + _rng.normal(scale=0.3, size=w.shape))
            .astype("float32") for i, w in enumerate(model.get_weights())]


@pytest.mark.parametrize("case", FORWARD_CASES)
def test_forward_parity_after_set_weights(case):
    make_layers, x = FORWARD_CASES[case]
    keras_model, torch_model = twins(make_layers)
    weights = randomised(keras_model)
    keras_model.set_weights(weights)
    torch_model.set_weights(keras_model.get_weights())
    expected = keras_model.predict(x)
    # float32 rounding grows with the values summed: 1e-5 of the outputs' scale (as dual_backend.parity's
    # forward_tolerance), 1e-5 itself for outputs within [-1, 1].
    assert max_difference([expected], [torch_model.predict(x)]) <= 1e-5 * max(1.0, float(np.abs(expected).max()))
    assert max_difference(keras_model.get_weights(), torch_model.get_weights()) == 0


def test_torch_dropout_is_inverted_dropout_as_keras():
    import torch

    from torch_impl.keras import Dropout

    layer = Dropout(0.25).train()
    x = torch.ones(200_000)
    y = layer(x)
    kept = y[y != 0]
    assert torch.allclose(kept, torch.full_like(kept, 1 / 0.75))
    assert abs(float((y == 0).float().mean()) - 0.25) < 0.01
    assert torch.equal(layer.eval()(x), x)


# ---------------------------------------------------------------------- optimizers: one step against tf.keras

OPTIMIZER_CASES = {
    "SGD()": lambda: keras.optimizers.SGD(),
    "SGD(learning_rate=0.1, momentum=0.9)": lambda: keras.optimizers.SGD(learning_rate=0.1, momentum=0.9),
    "SGD(momentum=0.9, nesterov=True)": lambda: keras.optimizers.SGD(0.1, momentum=0.9, nesterov=True),
    "Adam()": lambda: keras.optimizers.Adam(),
    "Adam(0.01, beta_1=0.8, beta_2=0.99, epsilon=1e-5)": lambda: keras.optimizers.Adam(0.01, beta_1=0.8,
                                                                                       beta_2=0.99, epsilon=1e-5),
    "RMSprop()": lambda: keras.optimizers.RMSprop(),
    "RMSprop(rho=0.8, epsilon=1e-4)": lambda: keras.optimizers.RMSprop(rho=0.8, epsilon=1e-4),
    "RMSprop(momentum=0.9)": lambda: keras.optimizers.RMSprop(learning_rate=0.01, momentum=0.9),
}


def step_layers():
    return [keras.Input((6,)), keras.layers.Dense(8, activation="relu"), keras.layers.BatchNormalization(),
            keras.layers.Dense(3, activation="softmax")]


def three_steps(keras_model, torch_model, make_optimizer, x, y) -> None:
    """Both models compiled with their own optimizer from ``make_optimizer`` and fit one epoch of 48
    samples in batches of 16, unshuffled: three steps."""
    for model in (keras_model, torch_model):
        model.compile(optimizer=make_optimizer(), loss="sparse_categorical_crossentropy")
        model.fit(x, y, batch_size=16, epochs=1, shuffle=False, verbose=0)


@pytest.mark.parametrize("case", OPTIMIZER_CASES)
def test_three_steps_of_each_optimizer_match_tf_keras(case):
    """Three steps, so that momentum and the moving averages act on a state that is not zero."""
    keras_model, torch_model = twins(step_layers)
    x, y = _rng.normal(size=(48, 6)).astype("float32"), _rng.integers(0, 3, 48)
    three_steps(keras_model, torch_model, OPTIMIZER_CASES[case], x, y)
    assert max_difference(keras_model.get_weights(), torch_model.get_weights()) <= 1e-5


def test_three_steps_through_tanh_elu_and_selu_match_tf_keras():
    def layers():
        return [keras.Input((13, 13, 3)), keras.layers.Conv2D(4, 3, activation="tanh"),
                keras.layers.MaxPooling2D(2), keras.layers.Conv2D(4, 2, activation="elu"), keras.layers.Flatten(),
                keras.layers.Dense(8, activation="selu"), keras.layers.Activation("tanh"),
                keras.layers.Dense(3, activation="softmax")]

    keras_model, torch_model = twins(layers)
    x, y = np.concatenate([IMAGES] * 3), _rng.integers(0, 3, 48)
    three_steps(keras_model, torch_model, lambda: keras.optimizers.SGD(0.1), x, y)
    assert max_difference(keras_model.get_weights(), torch_model.get_weights()) <= 1e-5


def test_three_steps_without_biases_match_tf_keras():
    def layers():
        return [keras.Input((13, 13, 3)), keras.layers.Conv2D(4, 3, activation="relu", use_bias=False),
                keras.layers.MaxPooling2D(2), keras.layers.Flatten(), keras.layers.Dense(6, use_bias=False),
                keras.layers.Dense(3, activation="softmax")]

    keras_model, torch_model = twins(layers)
    assert [w.shape for w in keras_model.get_weights()] == [(3, 3, 3, 4), (100, 6), (6, 3), (3,)]
    assert keras_model.count_params() == torch_model.count_params() == 108 + 600 + 18 + 3
    x, y = np.concatenate([IMAGES] * 3), _rng.integers(0, 3, 48)
    three_steps(keras_model, torch_model, lambda: keras.optimizers.Adam(0.01), x, y)
    assert max_difference(keras_model.get_weights(), torch_model.get_weights()) <= 1e-5


def test_three_steps_through_same_padding_match_tf_keras():
    def layers():
        return [keras.Input((13, 13, 3)), keras.layers.Conv2D(4, 3, strides=2, padding="same", activation="relu"),
                keras.layers.MaxPooling2D(2, padding="same"), keras.layers.Conv2D(4, 2, padding="same"),
                keras.layers.Flatten(), keras.layers.Dense(3, activation="softmax")]

    keras_model, torch_model = twins(layers)
    x, y = np.concatenate([IMAGES] * 3), _rng.integers(0, 3, 48)
    three_steps(keras_model, torch_model, lambda: keras.optimizers.SGD(0.1), x, y)
    assert keras_model.output_shape == torch_model.output_shape
    assert max_difference(keras_model.get_weights(), torch_model.get_weights()) <= 1e-5


def test_three_steps_through_average_pooling_reshape_and_global_pooling_match_tf_keras():
    def layers():
        return [keras.Input((507,)), keras.layers.Rescaling(2.0), keras.layers.Reshape((13, 13, 3)),
                keras.layers.Conv2D(4, 3, activation="relu"), keras.layers.AveragePooling2D(2, padding="same"),
                keras.layers.Conv2D(4, 2), keras.layers.GlobalAveragePooling2D(),
                keras.layers.Dense(3, activation="softmax")]

    keras_model, torch_model = twins(layers)
    x, y = np.concatenate([IMAGES] * 3).reshape(48, -1), _rng.integers(0, 3, 48)
    three_steps(keras_model, torch_model, lambda: keras.optimizers.Adam(0.01), x, y)
    assert max_difference(keras_model.get_weights(), torch_model.get_weights()) <= 1e-5


def test_the_settings_reach_each_frameworks_optimizer():
    keras_model, torch_model = twins(step_layers)
    for model in (keras_model, torch_model):
        model.compile(optimizer=keras.optimizers.RMSprop(0.01, rho=0.8, momentum=0.5, epsilon=1e-4), loss="mse")
    keras_optimizer = keras_model.keras_model.optimizer
    assert (float(keras_optimizer.learning_rate), keras_optimizer.rho, keras_optimizer.momentum,
            keras_optimizer.epsilon) == pytest.approx((0.01, 0.8, 0.5, 1e-4))
    torch_optimizer = torch_model.module.configure_optimizers()
    assert {k: torch_optimizer.param_groups[0][k] for k in ("lr", "rho", "momentum", "eps")} == \
        pytest.approx({"lr": 0.01, "rho": 0.8, "momentum": 0.5, "eps": 1e-4})


@pytest.mark.parametrize("backend", BACKENDS)
def test_lr_is_taken_as_learning_rate_with_a_warning_naming_it(backend):
    dual_backend.set_backend(backend)
    with pytest.warns(OldSpellingWarning, match=r"write learning_rate=0.05"):
        optimizer = keras.optimizers.SGD(lr=0.05)
    assert optimizer.learning_rate == 0.05
    model = keras.Sequential(step_layers())
    model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy")


def test_tf_nn_softmax_head_takes_its_loss_from_the_logits_as_tf_keras_does():
    """With saturated outputs a loss from clipped probabilities would differ; tf.keras finds the
    logits behind ``tf.nn.softmax`` and ``tf.nn.sigmoid``, and so do both backends here."""
    import tensorflow

    from dual_backend import tf

    x, y = FEATURES * 30, np.arange(16) % 4
    for real, ours in ((tensorflow.nn.softmax, tf.nn.softmax), (tensorflow.nn.sigmoid, tf.nn.sigmoid)):
        labels = y if ours is tf.nn.softmax else (y % 2).reshape(-1, 1).astype("float32")
        loss = "sparse_categorical_crossentropy" if ours is tf.nn.softmax else "binary_crossentropy"
        units = 4 if ours is tf.nn.softmax else 1
        tensorflow.keras.utils.set_random_seed(0)
        reference = tensorflow.keras.Sequential([tensorflow.keras.Input((6,)),
                                                 tensorflow.keras.layers.Dense(units, activation=real)])
        reference.compile(loss=loss)
        keras_model, torch_model = twins(lambda: [keras.Input((6,)), keras.layers.Dense(units, activation=ours)])
        for model in (keras_model, torch_model):
            model.set_weights(reference.get_weights())
            model.compile(loss=loss)
            assert model.evaluate(x, labels) == pytest.approx(reference.evaluate(x, labels, verbose=0), rel=1e-5)
