"""The keras backend behind the front end: a lesson's tf.keras model, trained by ``model.fit``.

Mirror of ``torch_impl/backend.py``.  Keras already has the surface the front
end offers, so this file mostly hands over: a Keras callback carries the
user's Keras-style callbacks, and the History is read back in the front
end's key order.
"""

from __future__ import annotations

import contextlib
import json
import warnings
import zipfile
from pathlib import Path

import numpy as np

from dual_backend.environments import cuda_libraries_advice
from dual_backend.errors import DualBackendError, refused_code
from dual_backend.interrupts import atomic_write
from dual_backend import keras_file
from dual_backend.keras_file import DUAL_BACKEND as METADATA  # stored beside Keras' own files in the .keras zip
from dual_backend.model import Model, batches_in, require_gpus
from keras_ref import process
from keras_ref.batches import CheckedPipeline, OrderedBatches
from keras_ref.callbacks import keras_callback, keras_callbacks

with process.start_up_lines_hidden():
    import tensorflow as tf

LOSS_CLASSES = {"sparse_categorical_crossentropy": "SparseCategoricalCrossentropy",
                "categorical_crossentropy": "CategoricalCrossentropy", "binary_crossentropy": "BinaryCrossentropy"}


def select_device(device: str) -> str:
    """``cpu``, ``gpu`` or ``auto`` (a GPU when TensorFlow sees one) → the device actually used."""
    with process.start_up_lines_hidden():  # the first look for GPUs: cuInit
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
        device = "gpu" if gpus else "cpu"
    if device == "gpu" and (advice := cuda_libraries_advice("TensorFlow")):
        warnings.warn(advice, stacklevel=2)
    return device


def seed(value: int) -> None:
    """Seed Python, numpy and TensorFlow, and make TensorFlow's ops deterministic: two runs with
    one seed then give the same weights (without op determinism some kernels may sum in any order)."""
    tf.keras.utils.set_random_seed(value)
    tf.config.experimental.enable_op_determinism()


def set_floatx(name: str) -> None:
    """Keras' own switch: the variables, optimizer slots, losses and metrics created after it.
    The dtype policy too: Keras fixes it from floatx when the first layer is built, and
    layers follow the policy, not floatx."""
    tf.keras.config.set_floatx(name)
    tf.keras.config.set_dtype_policy(name)


class KerasModel(Model):
    backend = "keras"
    saved_definition: dict | None = None  # a loaded lesson file's layers as a dual_backend.keras definition

    def definition(self) -> dict | None:
        return self.saved_definition

    def __init__(self, keras_model, lesson, variant, options, device):
        super().__init__(lesson, variant, options, select_device(device))
        self.keras_model = keras_model
        self.name = lesson or keras_model.name
        self.input_shape, self.output_shape = keras_model.input_shape, keras_model.output_shape
        config = keras_model.get_compile_config() or {}
        optimizer = getattr(keras_model, "optimizer", None)  # absent until the model is compiled
        self.optimizer = type(optimizer).__name__.lower() if optimizer else None
        self.loss, self.metrics = config.get("loss"), list(config.get("metrics") or [])
        if isinstance(self.loss, dict):  # a loss as Keras saves it: an object's config, or a function's name
            settings = self.loss.get("config")
            self.from_logits = isinstance(settings, dict) and bool(settings.get("from_logits"))
            self.loss = settings.get("name") if isinstance(settings, dict) else settings

    def _built_optimizer(self, description):
        from keras_ref.user_model import optimizer

        return optimizer(description)

    def _compile(self, optimizer, loss, metrics):
        if self.from_logits:  # Keras' loss class of that name, told that the outputs are logits
            loss = getattr(tf.keras.losses, LOSS_CLASSES[loss])(from_logits=True)
        self.keras_model.compile(optimizer=optimizer, loss=loss, metrics=metrics)

    def _is_pipeline(self, x) -> bool:
        return isinstance(x, tf.data.Dataset)

    def _is_optimizer(self, optimizer) -> bool:
        return isinstance(optimizer, tf.keras.optimizers.Optimizer)

    def _fit(self, x, y, epochs, batch_size, validation_data, callbacks, batch_orders, steps_per_epoch,
             framework_callbacks,
             initial_epoch=0, sample_weight=None, validation_batch_size=None):
        adapter = keras_callbacks(callbacks, self)
        checks = CheckedPipeline(self)
        if self._is_pipeline(x):
            x = checks(x)
        if self._is_pipeline(validation_data):
            validation_data = checks(validation_data, "the validation pipeline")
        if isinstance(batch_orders, list):  # the front end's permutations, one per epoch from initial_epoch
            steps_per_epoch = min(steps_per_epoch or len(x), batches_in(len(x), batch_size))
            x, y = OrderedBatches(x, y, batch_size, batch_orders, steps_per_epoch, sample_weight), None
            batch_orders = False
            sample_weight = None
        pipeline = self._is_pipeline(x) or isinstance(x, OrderedBatches)
        with checks.reraise():
            history = self.keras_model.fit(x, y, epochs=epochs, batch_size=None if pipeline else batch_size,
                                           validation_data=validation_data, steps_per_epoch=steps_per_epoch,
                                           callbacks=[adapter, *map(keras_callback, framework_callbacks)], verbose=0,
                                           shuffle=batch_orders and not pipeline,  # a Dataset shuffles itself
                                           initial_epoch=initial_epoch, sample_weight=sample_weight,
                                           validation_batch_size=validation_batch_size)
        keys = [*self.log_keys, *(f"val_{key}" for key in self.log_keys)]
        return {key: [float(v) for v in history.history[key]] for key in keys if key in history.history}

    def _evaluate(self, x, y, batch_size, callbacks, sample_weight=None, steps=None):
        adapter, checks = keras_callbacks(callbacks, self), CheckedPipeline(self)
        with checks.reraise():
            if self._is_pipeline(x):
                return self.keras_model.evaluate(checks(x), verbose=0, return_dict=True, steps=steps,
                                                 callbacks=[adapter])
            return self.keras_model.evaluate(x, y, batch_size=batch_size, verbose=0, return_dict=True,
                                             sample_weight=sample_weight, callbacks=[adapter])

    def _predict(self, x, batch_size, callbacks, steps=None):
        checks = CheckedPipeline(self)
        if self._is_pipeline(x):
            x, batch_size = checks(x), None
        with checks.reraise():
            return np.asarray(self.keras_model.predict(x, batch_size=batch_size, verbose=0, steps=steps,
                                                       callbacks=[keras_callbacks(callbacks, self)]))

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

    def _save_weights(self, path) -> None:
        atomic_write(Path(path), lambda temporary: self.keras_model.save_weights(temporary))

    def _load_weights(self, path) -> None:
        definition = self.definition()
        if definition is not None:  # the torch backend's checks and words for a file that does not fit, first
            keras_file.read_weights(path, definition)
        try:
            self.keras_model.load_weights(path)
        except (OSError, ValueError) as error:
            raise DualBackendError(f"{path} does not fit this model ({error}).") from None

    def save(self, path) -> None:
        """A ``.keras`` file (Keras' own format) with the lesson's name and options inside; a
        ``dual_backend.keras`` model's layers are Keras' own config (``dual_backend.keras_file``)."""
        path = Path(path)
        if path.suffix != ".keras":
            raise DualBackendError(f"keras models are saved as .keras files, got {path}.")

        def write(temporary):
            self.keras_model.save(temporary)
            with zipfile.ZipFile(temporary, "a") as archive:
                archive.writestr(METADATA, json.dumps(
                    {"lesson": self.lesson, "variant": self.variant, "options": self.options}))

        atomic_write(path, write)

    def _read_backup(self, path) -> dict:
        try:
            with np.load(path, allow_pickle=False) as stored:
                return json.loads(str(stored["record"]))
        except (OSError, KeyError, ValueError, zipfile.BadZipFile) as error:
            if "pickled" in str(error):  # numpy refuses to unpickle with allow_pickle=False
                raise refused_code(path, "a readable backup") from None
            raise DualBackendError(f"{path} is not a readable backup ({error}). Delete it to start over.") from None


def mirrored_strategy(devices: int, device: str):
    """``tf.distribute.MirroredStrategy`` over ``devices`` GPUs, or logical CPUs on the CPU."""
    if device == "gpu":
        gpus = tf.config.list_logical_devices("GPU")
        require_gpus(devices, len(gpus), "TensorFlow")
        return tf.distribute.MirroredStrategy([gpu.name for gpu in gpus[:devices]])
    cpu = tf.config.list_physical_devices("CPU")[0]
    try:
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * devices)
    except RuntimeError:
        if len(tf.config.list_logical_devices("CPU")) < devices:
            raise DualBackendError(
                f"MirroredStrategy over {devices} CPUs needs TensorFlow's logical CPU devices set up before "
                "TensorFlow first runs anything: build the model first thing in a fresh process "
                "(the command line does)."
            ) from None
    return tf.distribute.MirroredStrategy([f"/cpu:{index}" for index in range(devices)])


def build(program, recipe, options, device, devices=1, speedups=None) -> KerasModel:
    device = select_device(device)
    # Data-parallel: the model and its optimizer are created inside the strategy's scope,
    # and Keras splits each global batch among the replicas.
    scope = mirrored_strategy(devices, device).scope() if devices > 1 else contextlib.nullcontext()
    bf16 = speedups is not None and speedups.precision == "bf16"
    if bf16:  # layers take the policy when they are created
        tf.keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        with scope:
            keras_model = program.build_model(input_shape=recipe.lesson.input_shape, **options)
    finally:
        if bf16:
            tf.keras.mixed_precision.set_global_policy("float32")
    if speedups is not None and speedups.compile:
        keras_model.jit_compile = True
    model = KerasModel(keras_model, recipe.lesson.name, recipe.variant_name, options, device)
    model.devices = devices
    model.speedups = speedups or model.speedups
    return model


def load(path, device) -> KerasModel:
    select_device(device)
    definition = keras_file.check(path)  # the torch backend's checks and words for a broken file, before Keras'
    try:
        keras_model = tf.keras.models.load_model(path, safe_mode=True)
        metadata = {}
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                metadata = json.loads(archive.read(METADATA)) if METADATA in archive.namelist() else {}
    except (OSError, ValueError, zipfile.BadZipFile) as error:
        if "safe_mode" in str(error):  # Keras' safe mode refused to deserialize code (a Lambda's function)
            raise refused_code(path, "a model to load in Keras' safe mode", " (a Lambda layer's function)") from None
        raise DualBackendError(f"{path} is not a readable Keras model file ({error}).") from None
    if definition is not None and not metadata.get("lesson"):
        # A Sequential of layers dual_backend.keras builds: its descriptions, standing for Keras' own loaded model.
        from dual_backend.keras.models import from_definition

        try:
            return from_definition(definition, "keras", keras_model)[0]
        except DualBackendError:  # an order of layers a dual_backend.keras Sequential refuses, which tf.keras runs
            definition = None
    model = KerasModel(keras_model, metadata.get("lesson"), metadata.get("variant"),
                       metadata.get("options", {}), device)
    model.saved_definition = definition
    return model
