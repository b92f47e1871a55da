"""``keras.Sequential``: a model written once, built as a tf.keras model or as a LightningModule.

``keras.Sequential([...])`` returns the front end's model for the backend
chosen at the time (``keras.config.backend()``): a ``keras_ref.backend.KerasModel``
or a ``torch_impl.backend.TorchModel``, so that ``compile``, ``fit``,
``evaluate``, ``predict``, ``summary``, ``get_weights``, ``save`` and the
callbacks are the very ones the lessons use.  Until the input shape is known
(an ``Input``, ``input_shape=`` on the first layer, ``model.build(shape)``, or
the first ``fit`` / ``evaluate`` / ``predict``, as in Keras) the model is its
list of layer descriptions; then it is built, once, on the framework.
"""

from __future__ import annotations

import importlib

import numpy as np

from dual_backend.errors import DualBackendError
from dual_backend.keras import config
from dual_backend.keras import layers as layer_descriptions
from dual_backend.keras.preprocessing import DirectoryFlow
from dual_backend.model import Model as FrontEndModel

# The module of each backend that builds a dual_backend.keras model with its framework.
BUILDERS = {"keras": "keras_ref.user_model", "torch": "torch_impl.user_model"}
_classes: dict[str, type] = {}


def builder(backend: str):
    """``keras_ref.user_model`` or ``torch_impl.user_model``, its framework imported now."""
    import dual_backend

    dual_backend.backend_package(backend)  # the settings the framework reads as it starts, then the framework
    return importlib.import_module(BUILDERS[backend])


def on_backend(backend: str) -> type:
    """``Sequential`` combined with the backend's own model class (``KerasModel`` or ``TorchModel``)."""
    if backend not in _classes:
        _classes[backend] = type("Sequential", (Sequential, builder(backend).Model), {"__module__": __name__})
    return _classes[backend]


class Sequential(FrontEndModel):
    """``keras.Sequential(layers=None, name=None)``: layers in order, ``add()`` for one more.

    An instance is also the backend's own model class (``KerasModel`` or
    ``TorchModel``): ``Sequential.__new__`` picks it from ``keras.config.backend()``.
    """

    def __new__(cls, *args, **kwargs):
        return super().__new__(on_backend(config.backend()) if cls is Sequential else cls)

    def __init__(self, layers=None, trainable: bool = True, name: str | None = None):
        FrontEndModel.__init__(self, None, None, {}, "auto")
        if trainable is not True:
            raise DualBackendError("Sequential(trainable=False) is not supported by dual-backend: leave it out.")
        self.name = name or layer_descriptions.unique_name("sequential")
        self.layers: list[layer_descriptions.Layer] = []
        self.built = False
        self._input_shape: tuple | None = None  # one sample's shape, once known
        self._compiled_with: tuple | None = None  # compile's arguments, given before the build
        for layer in layers or []:
            self.add(layer)

    def add(self, layer) -> None:
        """Keras' ``model.add(layer)``: one more layer at the end (or the ``Input`` first)."""
        if self.built:
            raise DualBackendError(
                f"Model {self.name!r} is already built: add every layer before the first fit, evaluate, predict, "
                "summary or get_weights (dual-backend builds a model once).")
        if isinstance(layer, layer_descriptions.Input):
            if self.layers or self._input_shape is not None:
                raise DualBackendError("Input(...) must come first in a Sequential model, and only once.")
            self._input_shape = layer.shape
            return
        if not isinstance(layer, layer_descriptions.Layer):
            raise DualBackendError(
                f"{type(layer).__module__}.{type(layer).__name__} is not a dual_backend.keras layer: build the model "
                "from dual_backend.keras.layers (from dual_backend import keras), which build on either backend.")
        if layer.model is not None:
            raise DualBackendError(
                f"Layer {layer.name!r} already belongs to model {layer.model.name!r}: Keras would share its weights "
                "between the two models, which dual-backend does not do. Define a new layer.")
        if any(added.name == layer.name for added in self.layers):
            raise DualBackendError(
                "All layers added to a Sequential model should have unique names. Name "
                f"{layer.name!r} is already the name of a layer in this model. Update the `name` argument "
                "to pass a unique name.")
        if layer.input_shape is not None:
            if self.layers or self._input_shape is not None:
                raise DualBackendError(f"input_shape= is taken on the first layer only; layer {layer.name!r} "
                                       "is not the first.")
            self._input_shape = layer.input_shape
        layer.model = self
        self.layers.append(layer)

    # ------------------------------------------------------------------ building

    def build(self, input_shape=None) -> None:
        """Keras' ``model.build(input_shape)``, the batch axis included: ``model.build((None, 28, 28))``."""
        if self.built:
            return
        if input_shape is not None:
            self._input_shape = layer_descriptions._shape(tuple(input_shape)[1:], "build(input_shape=...) "
                                                          "after its batch axis")
        if self._input_shape is None:
            raise DualBackendError(self._not_built_message())
        self._build(self._input_shape)

    def build_if_shape_known(self) -> None:
        if not self.built and self._input_shape is not None:
            self._build(self._input_shape)

    def _not_built_message(self) -> str:
        return (f"Model {self.name!r} has not yet been built: its input shape is unknown. Give it with "
                "keras.Input(shape=...) or input_shape= on the first layer, call model.build(input_shape), "
                "or fit, evaluate or predict once (as in Keras).")

    def _require_built(self) -> None:
        self.build_if_shape_known()
        if not self.built:
            raise DualBackendError(self._not_built_message())

    def output_shapes(self, input_shape: tuple) -> list[tuple]:
        """Each layer's output shape (no batch axis), worked out without a framework, refusing what
        one backend would compute differently from the other, in the same words on both."""
        if not self.layers:
            raise DualBackendError(f"Model {self.name!r} has no layers: add some before using it.")
        channels_first = any(isinstance(layer, layer_descriptions.CHANNELS_FIRST) for layer in self.layers)
        shapes, shape, flattened_images = [], tuple(input_shape), None
        for layer in self.layers:
            if flattened_images is not None and not isinstance(layer, (layer_descriptions.Dense,
                                                                       *layer_descriptions.ELEMENTWISE)):
                raise DualBackendError(
                    f"{type(layer).__name__} layer {layer.name!r} comes between the Flatten of convolution maps "
                    f"({flattened_images.name!r}) and the Dense that reads them: dual-backend takes only Dropout, "
                    "AlphaDropout or Activation there. Move it after the Dense.")
            if isinstance(layer, layer_descriptions.Flatten) and channels_first and len(shape) == 3:
                flattened_images = layer
            elif isinstance(layer, layer_descriptions.Dense):
                flattened_images = None
            shape = layer.compute_output_shape(shape, channels_first)
            shapes.append(shape)
        return shapes

    def _build(self, input_shape: tuple, framework_model=None) -> None:
        """Built on the framework, or standing for ``framework_model``, the framework's model already
        built from these layers (``from_definition``)."""
        shapes = self.output_shapes(input_shape)
        build = builder(self.backend)
        if framework_model is None:
            framework_model = build.build_model(self.layers, input_shape, self.name)
        # Now the backend's own model: KerasModel.__init__ or TorchModel.__init__ on the built model.
        super(Sequential, self).__init__(framework_model, None, None, {}, "auto")
        for layer, built_layer, shape in zip(self.layers, build.built_layers(framework_model), shapes, strict=True):
            layer.built_layer, layer.output_shape = built_layer, (None, *shape)
        self.built = True
        if self._compiled_with is not None:
            optimizer, loss, args, kwargs = self._compiled_with
            self.compile(optimizer, loss, *args, **kwargs)

    def _build_from_inputs(self, x) -> None:
        """Keras' deferred build: the input shape from the first batch of ``x``."""
        if self.built:
            return
        if self._input_shape is None:
            if self._is_pipeline(x):
                raise DualBackendError(f"{self._not_built_message()} A data pipeline's shape is not read "
                                       "ahead: give the input shape.")
            try:
                shape = np.shape(x)
            except ValueError:  # ragged: the checks of fit and evaluate say what is wrong
                shape = ()
            if len(shape) < 2:
                raise DualBackendError(
                    f"{self._not_built_message()} Inputs of shape {shape} do not tell it: they need a batch axis "
                    "and at least one more.")
            self._input_shape = tuple(int(d) for d in shape[1:])
        self._build(self._input_shape)

    # ------------------------------------------------------------------ the Keras surface, built first

    def compile(self, optimizer="rmsprop", loss=None, *args, **kwargs):
        from dual_backend.keras.losses import Loss

        head = next((layer.arguments.get("activation") for layer in reversed(self.layers)
                     if not isinstance(layer, (layer_descriptions.Dropout, layer_descriptions.Flatten))), None)
        if isinstance(loss, Loss) and loss.from_logits and head in ("softmax", "sigmoid"):
            raise DualBackendError(
                f"{loss!r} takes the outputs as logits, but the last layer applies a {head}: Keras would take its "
                "probabilities as logits. Remove the activation (activation=None) or from_logits=True.")
        compiled = super().compile(optimizer, loss, *args, **kwargs)  # checked now, even before the build
        if not self.built:
            self._compiled_with = (optimizer, loss, args, kwargs)  # compiled again when the model is built
        return compiled

    def _compile(self, optimizer, loss, metrics):
        if self.built:
            super()._compile(optimizer, loss, metrics)

    def _from_flow(self, x, repeat: bool = False):
        """A ``flow_from_directory`` description as the backend's own pipeline (anything else as it is)."""
        if not isinstance(x, DirectoryFlow):
            return x
        if self._input_shape is None:
            self._input_shape = x.image_shape
        self.build()
        return builder(self.backend).pipeline(x, repeat, self)

    def fit(self, x=None, y=None, *args, **kwargs):
        # Keras 2 reads a DirectoryIterator on from epoch to epoch when steps_per_epoch is given.
        x = self._from_flow(x, repeat=kwargs.get("steps_per_epoch") is not None)
        if "validation_data" in kwargs:
            kwargs["validation_data"] = self._from_flow(kwargs["validation_data"])
        self._build_from_inputs(x)
        return super().fit(x, y, *args, **kwargs)

    def evaluate(self, x=None, y=None, *args, **kwargs):
        x = self._from_flow(x)
        self._build_from_inputs(x)
        return super().evaluate(x, y, *args, **kwargs)

    def predict(self, x, *args, **kwargs):
        x = self._from_flow(x)
        self._build_from_inputs(x)
        return super().predict(x, *args, **kwargs)

    def layer_rows(self):
        self._require_built()
        return super().layer_rows()

    def trainable_params(self) -> int:
        self._require_built()
        return super().trainable_params()

    def _get_weights(self):
        self._require_built()
        return super()._get_weights()

    def _set_weights(self, weights):
        self._require_built()
        super()._set_weights(weights)

    def _layer_outputs(self, x):
        self._require_built()
        return super()._layer_outputs(x)

    def save(self, path) -> None:
        self._require_built()
        super().save(path)

    def _save_weights(self, path) -> None:
        self._require_built()
        super()._save_weights(path)

    def _load_weights(self, path) -> None:
        self._require_built()
        super()._load_weights(path)

    @property
    def input(self) -> "SymbolicTensor":
        """Keras' ``model.input``: what ``keras.Model(inputs=model.input, outputs=...)`` starts from."""
        self._require_built()
        return SymbolicTensor(self, None)

    @property
    def inputs(self) -> list:
        return [self.input]

    def definition(self) -> dict:
        self._require_built()
        return {"name": self.name, "input_shape": self._input_shape,
                "layers": [(type(layer).__name__, layer.arguments, layer.name) for layer in self.layers],
                "optimizer": None if self.optimizer_description is None else
                (type(self.optimizer_description).__name__, self.optimizer_description.settings)}

    def get_layer(self, name: str | None = None, index: int | None = None):
        """Keras' ``model.get_layer(name=...)`` or ``(index=...)``."""
        if index is not None:
            return self.layers[index]
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise DualBackendError(f"No layer named {name!r}. Layers: {', '.join(l.name for l in self.layers)}.")


def load_model(path, device: str = "auto") -> FrontEndModel:
    """``keras.models.load_model``: ``dual_backend.load_model`` on the backend ``keras.config.backend()``
    names, so that with ``DUAL_BACKEND=torch`` a ``.keras`` file opens as a LightningModule."""
    import dual_backend
    from dual_backend import keras_file

    return dual_backend.load_model(path, device, backend=config.backend() if keras_file.is_keras_file(path) else None)


def from_definition(definition: dict, backend: str, framework_model=None) -> Sequential:
    """The model a saved ``definition()`` describes, built on ``backend`` with fresh weights, and the
    optimizer description it was compiled with (or None).

    ``framework_model``: the framework's own model of that definition, already built (tf.keras' model
    loaded from a file), which the layer descriptions then stand for, as ``compile`` would leave them:
    its weights, optimizer state and compile settings stay its own, nothing is built again.
    """
    layers = [layer_descriptions.Input(definition["input_shape"])]
    for kind, arguments, name in definition["layers"]:
        layers.append(layer_descriptions.LAYERS[kind](**arguments, name=name))
    model = on_backend(backend)(layers, name=definition["name"])
    model._build(model._input_shape, framework_model)
    optimizer = optimizer_of(definition)
    if framework_model is not None:
        model.optimizer_description = optimizer  # what compile(optimizer=keras.optimizers.X(...)) keeps
    return model, optimizer


def optimizer_of(definition: dict):
    """The ``keras.optimizers`` description a saved ``definition()`` was compiled with, or None."""
    from dual_backend.keras import optimizers

    optimizer = definition.get("optimizer")
    return None if optimizer is None else getattr(optimizers, optimizer[0])(**optimizer[1])


def from_saved(saved, backend: str, device: str = "auto") -> FrontEndModel:
    """The model a Keras model file holds (a ``dual_backend.keras_file.SavedModel``), built on ``backend``
    with the file's weights and compile settings.

    A file dual-backend wrote for a lesson (its ``dual_backend.json`` names the lesson) gives that
    lesson's model, built by name as ``dual-backend run`` builds it; any other file gives a
    ``Sequential`` of the file's layers, as if written in code with ``dual_backend.keras``.
    Raises ``DualBackendError`` naming the file and the layer when a weight does not fit.
    """
    import dual_backend
    from dual_backend.keras import losses

    lesson = saved.dual_backend.get("lesson")
    if lesson:
        model = dual_backend.build(lesson, backend=backend, variant=saved.dual_backend.get("variant"), device=device,
                                   **saved.dual_backend.get("options", {}))
    else:
        model, optimizer = from_definition(saved.definition, backend)
        if saved.loss is not None:
            loss = saved.loss
            if saved.from_logits:
                loss = next(kind for kind in losses.Loss.__subclasses__() if kind.name == loss)(from_logits=True)
            model.compile(optimizer=optimizer or "rmsprop", loss=loss, metrics=saved.metrics)
    try:
        model.set_weights(saved.weights)
        optimizer = saved.definition["optimizer"]
        if saved.optimizer_variables and optimizer and hasattr(model, "set_optimizer_variables"):
            model.set_optimizer_variables(*optimizer, saved.optimizer_variables)
    except DualBackendError as error:
        raise DualBackendError(f"{saved.path}: its weights do not fit the model it describes ({error}).") from None
    return model


class SymbolicTensor:
    """Keras' ``model.input`` or ``layer.output`` of a built Sequential: which tensor, not its values."""

    def __init__(self, model: Sequential, layer_index: int | None):
        self.model, self.layer_index = model, layer_index

    @property
    def shape(self) -> tuple:
        return self.model.input_shape if self.layer_index is None else \
            self.model.layers[self.layer_index].output_shape


class Model:
    """``keras.Model(inputs=model.input, outputs=[layer.output for layer in model.layers])``: the course's
    way to look at every layer's activations (course note 003), for the layers of one Sequential.

    ``predict`` gives each tapped layer's output, images in Keras' (N, height, width, channels) layout on
    both backends (``dual_backend.Model.layer_outputs``).  Other functional models are refused.
    """

    def __init__(self, inputs=None, outputs=None, name: str | None = None):
        inputs = inputs[0] if isinstance(inputs, (list, tuple)) and len(inputs) == 1 else inputs
        single = isinstance(outputs, SymbolicTensor)
        outputs = [outputs] if single else list(outputs) if isinstance(outputs, (list, tuple)) else None
        if not isinstance(inputs, SymbolicTensor) or inputs.layer_index is not None or not outputs or \
                not all(isinstance(o, SymbolicTensor) and o.model is inputs.model and o.layer_index is not None
                        for o in outputs):
            raise DualBackendError(
                "keras.Model(inputs, outputs) is supported by dual-backend for one use: the outputs of a "
                "Sequential's layers, keras.Model(inputs=model.input, outputs=[layer.output for layer in "
                "model.layers]). Other functional models and subclassed models are not supported: use "
                "keras.Sequential.")
        self.sequential, self.single = inputs.model, single
        self.indices = [o.layer_index for o in outputs]
        self.name = name or layer_descriptions.unique_name("functional")
        self.inputs, self.outputs = [inputs], outputs

    def predict(self, x, batch_size=None, verbose=0, steps=None, callbacks=None):
        for argument, value in (("steps", steps), ("callbacks", callbacks)):
            if value is not None:
                raise DualBackendError(f"predict({argument}=...) is not supported on a model of layer outputs.")
        every_layer = self.sequential.layer_outputs(x)
        chosen = [every_layer[index] for index in self.indices]
        return chosen[0] if self.single else chosen
