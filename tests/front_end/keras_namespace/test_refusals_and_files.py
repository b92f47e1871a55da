"""``dual_backend.keras``: refusals in the same words on both backends, layer outputs, datasets, save and load, image folders, losses, the LightningModule."""

import warnings

import numpy as np
import pytest

import dual_backend
from dual_backend import keras
from dual_backend.errors import DualBackendError
from tests.front_end.keras_namespace.support import BACKENDS, FEATURES, IMAGES, defined_on, max_difference, twins

_rng = np.random.default_rng(0)


# ---------------------------------------------------------------------- refusals, the same words on both backends

DEFINITION_REFUSALS = {
    "Conv2D(padding='causal')": (lambda: keras.layers.Conv2D(8, 3, padding="causal"),
                                 r"Conv2D\(padding='causal'\) is not supported by dual-backend on either backend "
                                 r"\(padding: supported: 'valid'/'same'\)\. Conv2D takes: filters, kernel_size"),
    "Conv2D(dilation_rate=2)": (lambda: keras.layers.Conv2D(8, 3, dilation_rate=2),
                                r"Conv2D\(dilation_rate=2\) is not supported"),
    "Dense(kernel_constraint=...)": (lambda: keras.layers.Dense(3, kernel_constraint="non_neg"),
                                     r"Dense\(kernel_constraint='non_neg'\) is not supported"),
    "Dense(kernel_initializer='orthogonal')": (lambda: keras.layers.Dense(3, kernel_initializer="orthogonal"),
                                               r"kernel_initializer: supported: glorot_uniform, glorot_normal, "
                                               r"he_normal, he_uniform, lecun_normal, lecun_uniform, zeros, ones"),
    "Dense(activation='gelu')": (lambda: keras.layers.Dense(3, activation="gelu"),
                                 r"Dense\(activation='gelu'\) is not supported.*relu, sigmoid, softmax, tanh, selu, "
                                 r"elu, linear"),
    "Dense(units=0)": (lambda: keras.layers.Dense(0), r"units: a positive integer"),
    "TensorFlow's own tf.nn.relu": (lambda: keras.layers.Dense(3, activation=__import__("tensorflow").nn.relu),
                                    r"is a function dual-backend cannot build on both backends.*"
                                    r"tf.nn.relu after `from dual_backend import tf`"),
    "an argument Keras does not have": (lambda: keras.layers.Dense(3, unit=4), r"Dense has no argument 'unit'"),
    "keras.layers.LSTM": (lambda: keras.layers.LSTM(4), r"keras.layers.LSTM is not supported by dual-backend on "
                                                        r"either backend. Supported layers: Input, Flatten, Dense"),
    "Adam(amsgrad=True)": (lambda: keras.optimizers.Adam(amsgrad=True), r"Adam\(amsgrad=True\) is not supported"),
    "SGD(weight_decay=0.01)": (lambda: keras.optimizers.SGD(weight_decay=0.01), r"SGD\(weight_decay=0.01\)"),
    "keras.optimizers.Adagrad": (lambda: keras.optimizers.Adagrad(), r"Supported optimizers: SGD, Adam, RMSprop"),
    "a tf.keras layer in the model": (lambda: keras.Sequential([__import__("tensorflow").keras.layers.Dense(3)]),
                                      r"is not a dual_backend.keras layer"),
}


@pytest.mark.parametrize("case", DEFINITION_REFUSALS)
@pytest.mark.parametrize("backend", BACKENDS)
def test_what_is_not_supported_is_refused_as_the_model_is_defined(backend, case):
    dual_backend.set_backend(backend)
    make, message = DEFINITION_REFUSALS[case]
    with pytest.raises(DualBackendError, match=message):
        make()


BUILD_REFUSALS = {
    "Dense on convolution maps": (
        lambda: [keras.Input((12, 12, 1)), keras.layers.Conv2D(2, 3), keras.layers.Dense(3, name="head")],
        r"Dense layer 'head' gets images of shape \(10, 10, 2\).*Put Flatten\(\) before it"),
    "BatchNormalization between Flatten and Dense": (
        lambda: [keras.Input((12, 12, 1)), keras.layers.Conv2D(2, 3), keras.layers.Flatten(name="flat"),
                 keras.layers.BatchNormalization(name="norm"), keras.layers.Dense(3)],
        r"BatchNormalization layer 'norm' comes between the Flatten of convolution maps \('flat'\)"),
    "Conv2D on flat inputs": (lambda: [keras.Input((28, 28)), keras.layers.Conv2D(2, 3, name="conv")],
                              r"Conv2D layer 'conv' expects inputs of shape \(height, width, channels\), "
                              r"got \(28, 28\)"),
}


@pytest.mark.parametrize("case", BUILD_REFUSALS)
def test_a_layer_order_one_backend_would_compute_differently_is_refused_with_the_same_words_on_both(case):
    make_layers, message = BUILD_REFUSALS[case]
    errors = []
    for backend in BACKENDS:
        with pytest.raises(DualBackendError, match=message) as error:
            defined_on(backend, make_layers).build()
        errors.append(str(error.value))
    assert errors[0] == errors[1]


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_layer_cannot_belong_to_two_models(backend):
    dual_backend.set_backend(backend)
    dense = keras.layers.Dense(3)
    keras.Sequential([keras.Input((4,)), dense])
    with pytest.raises(DualBackendError, match="already belongs to model"):
        keras.Sequential([keras.Input((4,)), dense])


@pytest.mark.parametrize("backend", BACKENDS)
def test_two_layers_of_one_name_are_refused_in_keras_words(backend):
    dual_backend.set_backend(backend)
    with pytest.raises(DualBackendError, match=r"All layers added to a Sequential model should have unique names\. "
                                               r"Name 'hidden' is already the name of a layer in this model"):
        keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, name="hidden"),
                          keras.layers.Dense(2, name="hidden")])


def test_the_same_activation_functions_compute_with_numpy():
    x = np.array([[-1.0, 0.0, 2.0]])
    np.testing.assert_allclose(keras.activations.relu(x), [[0.0, 0.0, 2.0]])
    np.testing.assert_allclose(keras.activations.softmax(x).sum(), 1.0, rtol=1e-6)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        keras.activations.sigmoid(np.array([-100.0, 100.0]))


# ---------------------------------------------------------------------- the layers' outputs, as the notes draw them


def cnn_layers():
    return [keras.layers.Conv2D(8, (3, 3), activation="relu", input_shape=(28, 28, 1)),
            keras.layers.MaxPooling2D(2, 2), keras.layers.Flatten(), keras.layers.Dense(10, activation="softmax")]


def test_the_notes_activation_model_gives_every_layers_output_alike_on_both_backends():
    """Course note 003's cell: ``keras.Model(inputs=model.input, outputs=layer_outputs)``."""
    images = _rng.random((2, 28, 28, 1)).astype("float32")
    found = []
    for model in twins(cnn_layers):
        layer_outputs = [layer.output for layer in model.layers]
        activation_model = keras.models.Model(inputs=model.input, outputs=layer_outputs)
        found.append(activation_model.predict(images[0].reshape(1, 28, 28, 1)))
    assert [f.shape for f in found[0]] == [(1, 26, 26, 8), (1, 13, 13, 8), (1, 1352), (1, 10)]
    assert max_difference(found[0], found[1]) <= 1e-5


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_single_layer_output_gives_one_array(backend):
    model = defined_on(backend, cnn_layers)
    tap = keras.Model(inputs=model.inputs, outputs=model.layers[1].output)
    assert tap.predict(np.zeros((3, 28, 28, 1), "float32")).shape == (3, 13, 13, 8)


@pytest.mark.parametrize("backend", BACKENDS)
def test_other_functional_models_are_refused(backend):
    model = defined_on(backend, cnn_layers)
    with pytest.raises(DualBackendError, match=r"supported by dual-backend for one use: the outputs of a "
                                               r"Sequential's layers"):
        keras.Model(inputs=keras.Input((28, 28, 1)), outputs=model.layers[0].output)


# ---------------------------------------------------------------------- datasets and utils


def test_keras_datasets_load_the_course_data_as_keras_does():
    (x_train, y_train), (x_test, y_test) = keras.datasets.fashion_mnist.load_data()
    assert x_train.shape == (60000, 28, 28) and x_train.dtype == np.uint8 and y_test.shape == (10000,)
    with pytest.raises(DualBackendError, match="Supported data sets: fashion_mnist, mnist"):
        keras.datasets.cifar10.load_data()


def test_to_categorical_gives_float32_one_hot_rows():
    np.testing.assert_array_equal(keras.utils.to_categorical([[2], [0]], num_classes=3),
                                  np.array([[0, 0, 1], [1, 0, 0]], dtype=np.float32))
    assert keras.utils.to_categorical(np.array([1, 3])).dtype == np.float32


# ---------------------------------------------------------------------- save and load


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_saved_model_loads_with_its_weights_and_compile_settings(backend, tmp_path):
    model = defined_on(backend, cnn_layers)
    model.compile(optimizer=keras.optimizers.SGD(0.05, momentum=0.5), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    x, y = _rng.random((32, 28, 28, 1)).astype("float32"), _rng.integers(0, 10, 32)
    model.fit(x, y, epochs=1, verbose=0)
    path = tmp_path / ("model.keras" if backend == "keras" else "model.pt")
    model.save(path)
    loaded = keras.models.load_model(path)
    assert loaded.backend == backend and loaded.layer_names() == model.layer_names()
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))
    assert loaded.evaluate(x, y) == pytest.approx(model.evaluate(x, y), rel=1e-6)
    # Its layer descriptions again (on torch built from them, on keras standing for tf.keras' loaded model),
    # with its optimizer's settings.
    assert isinstance(loaded, keras.Sequential) and loaded.optimizer_description.settings == \
        {"learning_rate": 0.05, "momentum": 0.5, "nesterov": False}


# ---------------------------------------------------------------------- image folders (course note 003, horse-or-human)


def folder_layers():
    return [keras.layers.Conv2D(4, 3, strides=4, activation="relu"), keras.layers.MaxPooling2D(4),
            keras.layers.Flatten(), keras.layers.Dense(1, activation="sigmoid")]


def validation_folder():
    return dual_backend.data.horse_or_human_dirs()[1]


def dense_only_layers():
    return [keras.layers.Flatten(), keras.layers.Dense(1, activation="sigmoid")]


@pytest.mark.parametrize("make_layers", [folder_layers, dense_only_layers])
def test_image_folders_flow_as_the_same_batches_on_both_backends(make_layers):
    """Unshuffled, the two pipelines give the same pixels and labels: equal predictions and losses
    (images channels first for a convolutional torch model, in Keras' layout for a dense one)."""
    generator = keras.preprocessing.image.ImageDataGenerator(rescale=1 / 255)
    flow = generator.flow_from_directory(validation_folder(), target_size=(300, 300), batch_size=64,
                                         class_mode="binary", shuffle=False)
    keras_model, torch_model = (defined_on(backend, make_layers) for backend in BACKENDS)
    keras_model.predict(flow)  # builds it: the input shape comes from the flow
    torch_model.build((None, 300, 300, 3))
    torch_model.set_weights(keras_model.get_weights())
    predictions = [model.predict(flow) for model in (keras_model, torch_model)]
    assert predictions[0].shape == (256, 1)
    assert max_difference(*[[p] for p in predictions]) <= 1e-5
    for model in (keras_model, torch_model):
        model.compile(optimizer="rmsprop", loss="binary_crossentropy", metrics=["acc"])
    assert keras_model.evaluate(flow) == pytest.approx(torch_model.evaluate(flow), rel=1e-5)


@pytest.mark.parametrize("backend", BACKENDS)
def test_fit_reads_a_flow_on_across_epochs_with_steps_per_epoch(backend):
    dual_backend.set_backend(backend)
    train_datagen = keras.preprocessing.image.ImageDataGenerator(rescale=1 / 255)
    train_generator = train_datagen.flow_from_directory(validation_folder(), target_size=(300, 300),
                                                        batch_size=32, class_mode="binary")
    model = keras.Sequential(folder_layers())
    model.compile(loss="binary_crossentropy", optimizer=keras.optimizers.RMSprop(learning_rate=0.001),
                  metrics=["acc"])
    history = model.fit(train_generator, steps_per_epoch=2, epochs=2, verbose=0)
    assert list(history.history) == ["loss", "acc"] and len(history.history["loss"]) == 2


@pytest.mark.parametrize("backend", BACKENDS)
def test_augmentation_and_resizing_are_refused_as_the_flow_is_defined(backend):
    dual_backend.set_backend(backend)
    with pytest.raises(DualBackendError, match=r"ImageDataGenerator\(rotation_range=40\) is not supported"):
        keras.preprocessing.image.ImageDataGenerator(rescale=1 / 255, rotation_range=40)
    generator = keras.preprocessing.image.ImageDataGenerator(rescale=1 / 255)
    with pytest.raises(DualBackendError, match=r"target_size=\(150, 150\)\) would resize .* \(300x300\)"):
        generator.flow_from_directory(validation_folder(), target_size=(150, 150), class_mode="binary")


def test_copy_weights_moves_a_user_models_weights_between_backends():
    keras_model, torch_model = (defined_on(backend, cnn_layers) for backend in BACKENDS)
    dual_backend.copy_weights(torch_model, keras_model)
    x = _rng.random((4, 28, 28, 1)).astype("float32")
    assert max_difference([keras_model.predict(x)], [torch_model.predict(x)]) <= 1e-5


# ---------------------------------------------------------------------- losses as classes and functions


@pytest.mark.parametrize("loss, units, labels", [
    (keras.losses.SparseCategoricalCrossentropy(from_logits=True), 4, np.arange(16) % 4),
    (keras.losses.CategoricalCrossentropy(from_logits=True), 4, np.eye(4, dtype="float32")[np.arange(16) % 4]),
    (keras.losses.BinaryCrossentropy(from_logits=True), 1, (np.arange(16) % 2).reshape(-1, 1).astype("float32")),
    (keras.losses.sparse_categorical_crossentropy, 4, np.arange(16) % 4),
    (keras.losses.MeanSquaredError(), 1, np.arange(16, dtype="float32").reshape(-1, 1)),
], ids=["sparse from_logits", "categorical from_logits", "binary from_logits", "the function", "mse"])
def test_loss_objects_and_from_logits_train_as_tf_keras(loss, units, labels):
    keras_model, torch_model = twins(lambda: [keras.Input((6,)), keras.layers.Dense(units)])
    for model in (keras_model, torch_model):
        model.compile(optimizer=keras.optimizers.SGD(0.1), loss=loss, metrics=["accuracy"])
        model.fit(FEATURES, labels, batch_size=8, epochs=1, shuffle=False, verbose=0)
    assert max_difference(keras_model.get_weights(), torch_model.get_weights()) <= 1e-5
    assert keras_model.evaluate(FEATURES, labels) == pytest.approx(torch_model.evaluate(FEATURES, labels), rel=1e-5)


@pytest.mark.parametrize("backend", BACKENDS)
def test_from_logits_on_a_softmax_head_is_refused(backend):
    model = defined_on(backend, lambda: [keras.layers.Dense(3, activation="softmax")])
    with pytest.raises(DualBackendError, match="the last layer applies a softmax"):
        model.compile(loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))


@pytest.mark.parametrize("backend", BACKENDS)
def test_from_logits_survives_the_deferred_build_and_save(backend, tmp_path):
    model = defined_on(backend, lambda: [keras.layers.Flatten(), keras.layers.Dense(3)])
    model.compile(optimizer="sgd", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x, y = FEATURES.reshape(16, 2, 3), np.arange(16) % 3
    model.fit(x, y, epochs=1, verbose=0)
    assert model.from_logits
    path = tmp_path / ("model.keras" if backend == "keras" else "model.pt")
    model.save(path)
    loaded = keras.models.load_model(path)
    assert loaded.from_logits and loaded.evaluate(x, y) == pytest.approx(model.evaluate(x, y), rel=1e-6)


# ---------------------------------------------------------------------- the LightningModule itself


def test_to_lightning_trains_in_a_users_own_trainer_as_fit_does():
    import lightning as L
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    x, y = _rng.random((64, 28, 28, 1)).astype("float32"), _rng.integers(0, 10, 64)
    models = [defined_on("torch", cnn_layers) for _ in range(2)]
    models[1].set_weights(models[0].get_weights())
    for model in models:
        model.compile(optimizer=keras.optimizers.Adam(0.01), loss="sparse_categorical_crossentropy",
                      metrics=["accuracy"])
    models[0].fit(x, y, batch_size=16, epochs=2, shuffle=False, verbose=0)
    module = models[1].to_lightning()
    assert isinstance(module, L.LightningModule)
    batches = DataLoader(TensorDataset(torch.from_numpy(x), torch.from_numpy(y)), batch_size=16, shuffle=False)
    L.Trainer(max_epochs=2, accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
              enable_model_summary=False).fit(module, batches)
    assert max_difference(models[0].get_weights(), models[1].get_weights()) <= 1e-6
    # The front end still trains and predicts it, after the user's Trainer.
    assert models[1].predict(x[:2]).shape == (2, 10)


def test_to_lightning_is_offered_on_the_torch_backend_only():
    assert not hasattr(defined_on("keras", cnn_layers), "to_lightning")


def test_parity_checks_take_a_definition_of_your_own():
    from dual_backend import parity

    def define():
        return [keras.layers.Conv2D(4, 3, padding="same", activation="relu"), keras.layers.MaxPooling2D(),
                keras.layers.Flatten(), keras.layers.Dense(3, activation="softmax")]

    x, y = IMAGES, _rng.integers(0, 3, 16)
    found = parity.definition_checks(define, x, y, "sparse_categorical_crossentropy",
                                     optimizers=["sgd", keras.optimizers.Adam(0.01)])
    assert [check.name.split(" on ")[0] for check in found] == [
        "forward keras → torch", "forward torch → keras", "one sgd step", "one Adam(learning_rate=0.01, beta_1=0.9, "
        "beta_2=0.999, epsilon=1e-07) step"]
    assert all(check.passed for check in found), [check.line() for check in found]
    assert keras.config.backend() == "keras"  # the choice before is back
