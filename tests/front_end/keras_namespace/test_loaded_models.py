"""A Keras model file loaded on the keras backend: a ``dual_backend.keras`` Sequential of its layers, standing
for tf.keras' own loaded model (its weights, optimizer state and compile settings as Keras loaded them),
when dual_backend.keras builds its layers; tf.keras' own model otherwise."""

import numpy as np
import pytest

import dual_backend
from dual_backend import keras
from dual_backend.errors import DualBackendError
from tests.front_end.keras_namespace.support import IMAGES, defined_on, max_difference

tf = pytest.importorskip("tensorflow")

_rng = np.random.default_rng(2)
LABELS = _rng.integers(0, 3, len(IMAGES))


def image_layers():
    return [keras.Input((13, 13, 3)), keras.layers.Conv2D(4, 3, activation="relu", name="maps"),
            keras.layers.MaxPooling2D(2, name="pooled"), keras.layers.Flatten(name="flat"),
            keras.layers.Dense(5, activation="relu", name="hidden"),
            keras.layers.Dense(3, activation="softmax", name="head")]


def trained_and_saved(path):
    """A model trained one epoch with Adam (so that the file holds Adam's moments), then saved to ``path``."""
    model = defined_on("keras", image_layers)
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    model.fit(IMAGES, LABELS, epochs=1, batch_size=4, shuffle=False, verbose=0)
    model.save(path)
    return model


def loaded_on_keras(path):
    dual_backend.set_backend("keras")
    return keras.models.load_model(path)


def test_a_model_saved_and_loaded_on_keras_is_a_sequential_of_the_same_layers(tmp_path):
    model = trained_and_saved(tmp_path / "model.keras")
    loaded = loaded_on_keras(tmp_path / "model.keras")
    assert isinstance(loaded, keras.Sequential) and loaded.backend == "keras"
    assert [(type(layer), layer.name) for layer in loaded.layers] == \
        [(type(layer), layer.name) for layer in model.layers]
    for layer, original in zip(loaded.layers, model.layers):
        assert layer.output_shape == original.output_shape
        assert max_difference(layer.get_weights(), original.get_weights()) == 0
    assert loaded.get_layer("hidden") is loaded.layers[3] and loaded.get_layer(index=0).name == "maps"


def test_a_loaded_models_layers_are_those_of_tf_keras_loaded_model(tmp_path):
    trained_and_saved(tmp_path / "model.keras")
    loaded = loaded_on_keras(tmp_path / "model.keras")
    head = loaded.get_layer("head")
    head.set_weights([np.zeros_like(w) for w in head.get_weights()])
    np.testing.assert_array_equal(loaded.keras_model.get_layer("head").get_weights()[0], 0)
    np.testing.assert_allclose(loaded.predict(IMAGES), 1 / 3, rtol=1e-6)


def test_a_loaded_models_layer_outputs_are_those_before_saving(tmp_path):
    model = trained_and_saved(tmp_path / "model.keras")
    loaded = loaded_on_keras(tmp_path / "model.keras")
    activations = keras.Model(inputs=loaded.input, outputs=[layer.output for layer in loaded.layers])
    before = keras.Model(inputs=model.input, outputs=[layer.output for layer in model.layers])
    assert max_difference(activations.predict(IMAGES), before.predict(IMAGES)) == 0


def test_a_loaded_models_summary_is_the_saved_models_and_its_definition_the_one_torch_loads(tmp_path):
    model = trained_and_saved(tmp_path / "model.keras")
    loaded = loaded_on_keras(tmp_path / "model.keras")
    printed = {}
    for name, shown in (("saved", model), ("loaded", loaded)):
        lines = []
        shown.summary(print_fn=lines.append)
        printed[name] = lines
    assert printed["loaded"] == printed["saved"]
    assert loaded.definition() == dual_backend.load_model(tmp_path / "model.keras", backend="torch").definition()
    assert loaded.optimizer_description.settings == model.optimizer_description.settings


def test_training_goes_on_from_the_files_optimizer_state(tmp_path):
    model = trained_and_saved(tmp_path / "model.keras")
    loaded = loaded_on_keras(tmp_path / "model.keras")
    assert int(loaded.keras_model.optimizer.iterations) == int(model.keras_model.optimizer.iterations) > 0
    for trained in (model, loaded):
        trained.fit(IMAGES, LABELS, epochs=1, batch_size=4, shuffle=False, verbose=0)
    assert max_difference(loaded.get_weights(), model.get_weights()) == 0


def test_a_keras_file_the_torch_backend_wrote_loads_on_keras_as_a_sequential(tmp_path):
    on_torch = defined_on("torch", image_layers)
    on_torch.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    on_torch.save(tmp_path / "torch.keras")
    loaded = loaded_on_keras(tmp_path / "torch.keras")
    assert isinstance(loaded, keras.Sequential) and loaded.backend == "keras"
    assert [layer.name for layer in loaded.layers] == [layer.name for layer in on_torch.layers]
    assert max_difference(loaded.get_weights(), on_torch.get_weights()) == 0
    assert loaded.loss == "sparse_categorical_crossentropy" and loaded.definition()["optimizer"][0] == "SGD"


def test_a_lessons_file_loads_on_keras_as_the_lessons_model(tmp_path):
    lesson = dual_backend.build("hello_world", backend="keras")
    lesson.save(tmp_path / "lesson.keras")
    loaded = dual_backend.load_model(tmp_path / "lesson.keras")
    assert loaded.lesson == "hello_world" and not isinstance(loaded, keras.Sequential)


def tf_keras_file(tmp_path, layers) -> tuple:
    """A file tf.keras wrote for ``layers`` (tf.keras' own), and the model that wrote it."""
    model = tf.keras.Sequential(layers)
    model.save(tmp_path / "tf.keras")
    return tmp_path / "tf.keras", model


def test_a_tf_keras_file_of_layers_dual_backend_does_not_build_loads_as_tf_keras_own_model(tmp_path):
    path, model = tf_keras_file(tmp_path, [tf.keras.Input((8, 2)), tf.keras.layers.Conv1D(3, 2, name="conv"),
                                           tf.keras.layers.Flatten(), tf.keras.layers.Dense(1)])
    series = _rng.random((4, 8, 2)).astype("float32")
    loaded = loaded_on_keras(path)
    assert not isinstance(loaded, keras.Sequential) and loaded.definition() is None
    np.testing.assert_array_equal(loaded.predict(series), model.predict(series, verbose=0))
    with pytest.raises(DualBackendError, match="'conv' is a Conv1D layer"):
        dual_backend.load_model(path, backend="torch")


def test_a_tf_keras_file_a_dual_backend_sequential_refuses_loads_as_tf_keras_own_model(tmp_path):
    """dual_backend.keras takes nothing but Dropout or Activation between the Flatten of convolution maps
    and the Dense that reads them; tf.keras runs such a model all the same."""
    path, model = tf_keras_file(tmp_path, [tf.keras.Input((6, 6, 2)), tf.keras.layers.Conv2D(3, 3),
                                           tf.keras.layers.Flatten(), tf.keras.layers.BatchNormalization(),
                                           tf.keras.layers.Dense(1)])
    loaded = loaded_on_keras(path)
    assert not isinstance(loaded, keras.Sequential) and loaded.definition() is None
    np.testing.assert_array_equal(loaded.predict(IMAGES[:4, :6, :6, :2]),
                                  model.predict(IMAGES[:4, :6, :6, :2], verbose=0))
