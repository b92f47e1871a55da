"""The keras backend behind the front end: a lesson's tf.keras model, trained by ``model.fit``.

Mirror of ``torch_impl/_model.py``.  Keras already has the surface the front
end offers, so this file mostly hands over: a Keras callback carries the
user's Keras-style callbacks, and the History is read back in the front
end's key order.
"""

from __future__ import annotations

import json
import os
import tempfile
import zipfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's start-up chatter is not the lesson

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from dual_backend.callbacks import EarlyStopping, ModelCheckpoint, TensorBoard  # noqa: E402
from dual_backend.errors import DualBackendError  # noqa: E402
from dual_backend.model import Model, order_logs  # noqa: E402

METADATA = "dual_backend.json"  # stored beside Keras' own files inside the .keras zip


def select_device(device: str) -> str:
    """``cpu``, ``gpu`` or ``auto`` (a GPU when TensorFlow sees one) → the device actually used."""
    gpus = tf.config.list_physical_devices("GPU")
    if device == "gpu" and not gpus:
        raise DualBackendError(
            "--device gpu was asked for, but TensorFlow sees no GPU. Use --device cpu or auto, "
            "or install TensorFlow's CUDA libraries (pip install 'tensorflow[and-cuda]==2.21.0')."
        )
    if device == "cpu" and gpus:
        try:
            tf.config.set_visible_devices([], "GPU")
        except RuntimeError:
            raise DualBackendError(
                "--device cpu must be chosen before TensorFlow first uses the GPU; "
                "choose it in a fresh process."
            ) from None
    if device == "auto":
        return "gpu" if gpus else "cpu"
    return device


def seed(value: int) -> None:
    tf.keras.utils.set_random_seed(value)


def set_floatx(name: str) -> None:
    """Keras' own switch: the variables, optimizer slots, losses and metrics created after it.
    The dtype policy too: Keras fixes it from floatx when the first layer is built, and
    layers follow the policy, not floatx."""
    tf.keras.config.set_floatx(name)
    tf.keras.config.set_dtype_policy(name)


class KerasCallbacks(tf.keras.callbacks.Callback):
    """Runs the front end's Keras-style callbacks from Keras' own hooks."""

    def __init__(self, callbacks, front: "KerasModel"):
        super().__init__()
        self.callbacks, self.front = callbacks, front

    def on_train_begin(self, logs=None):
        self.callbacks.on_train_begin({})

    def on_epoch_begin(self, epoch, logs=None):
        self.callbacks.on_epoch_begin(epoch, {})

    def on_epoch_end(self, epoch, logs=None):
        logs = order_logs(logs, self.front.log_keys)
        self.callbacks.on_epoch_end(epoch, logs)
        if self.front.stop_training:
            self.model.stop_training = True

    def on_train_end(self, logs=None):
        self.callbacks.on_train_end({})


class KerasBatchCallbacks(KerasCallbacks):
    """The same, with the per-batch hook; only used when a callback wants it, since
    Keras converts the logs to Python numbers for every batch once the hook exists."""

    def on_train_batch_end(self, batch, logs=None):
        self.callbacks.on_train_batch_end(batch, logs)


class OrderedBatches(tf.keras.utils.PyDataset):
    """Batches in given permutations, one per epoch (the front end's ``batch_order_seed``).

    All epochs' batches in one sequence, read with ``steps_per_epoch``: Keras then keeps
    one iterator across epochs, so a batch's epoch is its index.  Counting epochs with
    ``on_epoch_end`` does not work: Keras calls it once before the first epoch (which
    trained epochs 0, 1, 2 on permutations 1, 2, 2), and tf.data may prefetch the next
    epoch's first batches before the current epoch's ``on_epoch_end``."""

    def __init__(self, x, y, batch_size, orders, steps):
        super().__init__()
        self.x, self.y, self.batch_size, self.orders, self.steps = x, y, batch_size, orders, steps

    def __len__(self):
        return len(self.orders) * self.steps

    def __getitem__(self, index):
        epoch, batch = divmod(index, self.steps)
        chosen = self.orders[epoch][batch * self.batch_size:(batch + 1) * self.batch_size]
        return self.x[chosen], self.y[chosen]


def keras_callback(callback):
    """The front end's ``TensorBoard`` / ``ModelCheckpoint`` / ``EarlyStopping`` as Keras' own."""
    if isinstance(callback, TensorBoard):
        return tf.keras.callbacks.TensorBoard(callback.log_dir)
    if isinstance(callback, ModelCheckpoint):
        Path(callback.filepath).parent.mkdir(parents=True, exist_ok=True)
        return tf.keras.callbacks.ModelCheckpoint(callback.filepath, monitor=callback.monitor,
                                                  save_best_only=callback.save_best_only)
    if isinstance(callback, EarlyStopping):
        return tf.keras.callbacks.EarlyStopping(monitor=callback.monitor, patience=callback.patience,
                                                min_delta=callback.min_delta)
    raise DualBackendError(f"No Keras counterpart for {type(callback).__name__}.")


class KerasModel(Model):
    backend = "keras"

    def __init__(self, keras_model, lesson, variant, options, device):
        super().__init__(lesson, variant, options, select_device(device))
        self.keras_model = keras_model
        self.name = lesson or keras_model.name
        self.input_shape, self.output_shape = keras_model.input_shape, keras_model.output_shape
        config = keras_model.get_compile_config() or {}
        self.optimizer = type(keras_model.optimizer).__name__.lower() if keras_model.optimizer else None
        self.loss, self.metrics = config.get("loss"), list(config.get("metrics") or [])

    def _compile(self, optimizer, loss, metrics):
        self.keras_model.compile(optimizer=optimizer, loss=loss, metrics=metrics)

    def _is_pipeline(self, x) -> bool:
        return isinstance(x, tf.data.Dataset)

    def _fit(self, x, y, epochs, batch_size, validation_data, callbacks, shuffle, steps_per_epoch, framework):
        adapter = (KerasBatchCallbacks if callbacks.wants_batches else KerasCallbacks)(callbacks, self)
        if isinstance(shuffle, list):  # the front end's permutations, one per epoch
            steps_per_epoch = min(steps_per_epoch or len(x), -(-len(x) // batch_size))
            x, y, shuffle = OrderedBatches(x, y, batch_size, shuffle, steps_per_epoch), None, False
        pipeline = self._is_pipeline(x) or isinstance(x, OrderedBatches)
        history = self.keras_model.fit(x, y, epochs=epochs, batch_size=None if pipeline else batch_size,
                                       validation_data=validation_data, steps_per_epoch=steps_per_epoch,
                                       callbacks=[adapter, *map(keras_callback, framework)], verbose=0,
                                       shuffle=shuffle and not pipeline)  # a Dataset shuffles itself
        keys = [*self.log_keys, *(f"val_{key}" for key in self.log_keys)]
        return {key: [float(v) for v in history.history[key]] for key in keys if key in history.history}

    def _evaluate(self, x, y, batch_size):
        if self._is_pipeline(x):
            return self.keras_model.evaluate(x, verbose=0, return_dict=True)
        return self.keras_model.evaluate(x, y, batch_size=batch_size, verbose=0, return_dict=True)

    def _predict(self, x, batch_size):
        return np.asarray(self.keras_model.predict(x, batch_size=batch_size, verbose=0))

    def _get_weights(self):
        return [np.asarray(w) for w in self.keras_model.get_weights()]

    def _set_weights(self, weights):
        self.keras_model.set_weights(weights)

    def _layer_outputs(self, x):
        # The course's activation_model: one Model from the input to every layer's output.
        model = self.keras_model
        activation_model = tf.keras.Model(inputs=model.inputs, outputs=[layer.output for layer in model.layers])
        return [np.asarray(output) for output in activation_model.predict(x, verbose=0)]

    def layer_rows(self):
        return [
            (layer.name, type(layer).__name__, tuple(layer.output.shape), layer.count_params())
            for layer in self.keras_model.layers
        ]

    def trainable_params(self) -> int:
        return int(sum(np.prod(w.shape) for w in self.keras_model.trainable_weights))

    def save(self, path) -> None:
        """A ``.keras`` file (Keras' own format) with the lesson's name and options inside."""
        path = Path(path)
        if path.suffix != ".keras":
            raise DualBackendError(f"keras models are saved as .keras files, got {path}.")
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".keras")
        os.close(handle)
        try:
            self.keras_model.save(temporary)
            with zipfile.ZipFile(temporary, "a") as archive:
                archive.writestr(METADATA, json.dumps(
                    {"lesson": self.lesson, "variant": self.variant, "options": self.options}))
            os.replace(temporary, path)
        finally:
            Path(temporary).unlink(missing_ok=True)


def build(program, recipe, options, device) -> KerasModel:
    select_device(device)
    keras_model = program.build_model(input_shape=recipe.lesson.input_shape, **options)
    return KerasModel(keras_model, recipe.lesson.name, recipe.variant_name, options, device)


def load(path, device) -> KerasModel:
    select_device(device)
    try:
        keras_model = tf.keras.models.load_model(path, safe_mode=True)
        with zipfile.ZipFile(path) as archive:
            metadata = json.loads(archive.read(METADATA)) if METADATA in archive.namelist() else {}
    except (OSError, ValueError, zipfile.BadZipFile) as error:
        raise DualBackendError(f"{path} is not a readable Keras model file ({error}).") from None
    return KerasModel(keras_model, metadata.get("lesson"), metadata.get("variant"),
                      metadata.get("options", {}), device)
