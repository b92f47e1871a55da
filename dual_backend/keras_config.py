"""Keras' model config (``config.json``, a legacy file's ``model_config``) as a ``dual_backend.keras``
definition, and back.

:func:`definition` reads a Sequential's config into ``{"name", "input_shape", "layers": [(class, arguments,
layer name)], "optimizer": (class, settings) or None}`` and the compile settings, each layer checked as a
layer written in code is; :func:`model_config` writes Keras 3's config of such a definition, as
``keras.Sequential.get_config`` would.  Nothing in a config runs: a ``Lambda`` layer or a custom object
(``registered_name``) is refused by name, as Keras' ``safe_mode`` refuses them.  ``dual_backend.keras_file``
reads and writes the files around it.
"""

from __future__ import annotations

import numpy as np

from dual_backend.errors import DualBackendError

# Layers whose config asks to run Python code (what Keras' safe_mode refuses).
RUNS_CODE = ("Lambda", "TFOpLambda", "SlicingOpLambda")
# Config keys a layer may carry that change nothing while the option that uses them is off.
NEUTRAL = {"renorm_clipping": None, "quantization_config": None}
UNREAD = ("renorm_momentum", "build_config")  # renorm_momentum: read only with renorm=True, which is refused


class KerasFileError(DualBackendError):
    """A Keras model file that cannot be read as it is: what is wrong, in which file and layer."""


def definition(config: dict, path) -> tuple[dict, dict]:
    """The definition and compile settings a Keras model config describes (see ``keras_file.SavedModel``)."""
    _no_code(config, path, "the model")
    kind = config.get("class_name")
    if kind != "Sequential":
        raise KerasFileError(
            f"{path} holds a {kind} model: dual-backend reads Sequential models (keras.Sequential), the course's "
            "and dual_backend.keras's kind. Functional and subclassed models are not supported.")
    body = config.get("config") or {}
    layer_configs = body.get("layers")
    if not isinstance(layer_configs, list):
        raise KerasFileError(f"{path}: its config lists no layers. Save the model again.")
    input_shape = body.get("build_input_shape")
    layers = []
    for layer_config in layer_configs:
        _no_code(layer_config, path, "a layer")
        kind, arguments = layer_config.get("class_name"), dict(layer_config.get("config") or {})
        name = arguments.pop("name", None)
        if kind == "InputLayer":
            input_shape = arguments.get("batch_shape") or arguments.get("batch_input_shape")
            _check_dtype(arguments.get("dtype"), path, name, kind)
            continue
        batch_input_shape = arguments.pop("batch_input_shape", None)
        if batch_input_shape is not None and not layers:
            input_shape = batch_input_shape
        layers.append((kind, arguments, name))
    if input_shape is None:
        raise KerasFileError(f"{path}: the model was saved before it knew its input shape (never built). Build it "
                             "(an Input, or one fit or predict), then save it again.")
    shape = tuple(input_shape[1:])
    images_first = channels_first([kind for kind, _, _ in layers])
    definition_layers = []
    for kind, arguments, name in layers:
        arguments = _layer_arguments(kind, arguments, shape, path, name)
        definition_layers.append((kind, arguments, name))
        try:
            shape = _description(kind, arguments, name, path).compute_output_shape(shape, images_first)
        except KerasFileError:
            raise
        except DualBackendError as error:
            raise KerasFileError(f"{path}: {error}") from None
    definition = {"name": body.get("name") or "sequential", "input_shape": tuple(input_shape[1:]),
                  "layers": definition_layers, "optimizer": None}
    compiled = {}
    compile_config = config.get("compile_config")
    if compile_config:
        definition["optimizer"], compiled = _compile_settings(compile_config, path)
    return definition, compiled


def channels_first(kinds) -> bool:
    """Whether the torch backend holds this model's images channels first (as ``Sequential`` decides)."""
    from dual_backend.keras import layers as descriptions

    return any(issubclass(descriptions.LAYERS[kind], descriptions.CHANNELS_FIRST)
               for kind in kinds if kind in descriptions.LAYERS)


def _no_code(config, path, what: str) -> None:
    if not isinstance(config, dict):
        raise KerasFileError(f"{path}: {what} in its config is not a JSON object. Save the model again.")
    kind = config.get("class_name")
    name = (config.get("config") or {}).get("name") if isinstance(config.get("config"), dict) else None
    named = f" {name!r}" if name else ""
    if kind in RUNS_CODE:
        raise KerasFileError(
            f"{path}: layer{named} is a {kind} layer, whose function would run as Python code when loaded, so the "
            "file was not loaded (as Keras' safe_mode refuses it). Write the function as layers dual_backend.keras "
            "supports, or load the file with Keras itself if you trust its source.")
    registered = config.get("registered_name")
    module = config.get("module")
    if (registered not in (None, kind) and not str(registered).startswith("keras")) or \
            (module is not None and not str(module).startswith("keras")):
        raise KerasFileError(
            f"{path}: {what}{named} is the custom object {registered or kind!r} (module {module!r}): its code is not "
            "in the file and dual-backend runs no code from a file. Only Keras' own layers are read.")


def _check_dtype(dtype, path, name, kind) -> None:
    policy = dtype.get("config", {}).get("name") if isinstance(dtype, dict) else dtype
    if policy not in (None, "float32"):
        raise KerasFileError(
            f"{path}: layer {name!r} ({kind}) computes in {policy}: dual-backend reads float32 models (a mixed or "
            "float64 model would compute other numbers here). Save a float32 model.")


def _layer_arguments(kind: str, arguments: dict, input_shape: tuple, path, name) -> dict:
    """A layer config's arguments as the ``dual_backend.keras`` description of ``kind`` takes them."""
    from dual_backend.keras import layers as descriptions

    if kind not in descriptions.LAYERS:
        raise KerasFileError(f"{path}: layer {name!r} is a {kind} layer, which dual-backend does not build on "
                             f"either backend. Supported layers: {', '.join(descriptions.LAYERS)}.")
    _check_dtype(arguments.pop("dtype", None), path, name, kind)
    if arguments.pop("trainable", True) is not True:
        raise KerasFileError(f"{path}: layer {name!r} ({kind}) is frozen (trainable=False), which dual-backend does "
                             "not support: every layer trains. Unfreeze it before saving.")
    for key in UNREAD:
        arguments.pop(key, None)
    for key, neutral in NEUTRAL.items():
        if key in arguments and arguments.pop(key) != neutral:
            raise KerasFileError(f"{path}: layer {name!r} ({kind}) sets {key}, which dual-backend does not support "
                                 "on either backend.")
    taken = descriptions.LAYERS[kind].options
    for key, value in list(arguments.items()):
        if isinstance(value, dict) and "class_name" in value:  # an initializer, regularizer or constraint
            _no_code(value, path, f"the {key} of layer {name!r}")
            if key.endswith("_initializer") and key in taken:
                arguments[key] = _initializer(value, taken[key])
        elif isinstance(value, list) and key not in ("batch_input_shape",):
            arguments[key] = tuple(value)
    if kind == "BatchNormalization":
        arguments["axis"] = _batch_normalization_axis(arguments.get("axis", -1), input_shape, path, name)
    if kind == "Dropout" or kind == "AlphaDropout":
        arguments.pop("seed", None)  # each framework draws its own masks (dual_backend.keras.layers.Dropout)
    return arguments


def _initializer(config: dict, option) -> str:
    """A built-in initialiser the layer takes, by its name in the description (HeNormal → 'he_normal'); for
    any other, Keras' default: the weights come from the file, so how they were first drawn changes nothing."""
    from dual_backend.keras import initializers

    kind = initializers.CLASSES.get(config["class_name"])
    if kind is not None:
        try:
            return option.value(kind.name)
        except ValueError:  # BatchNormalization's gamma_initializer takes 'ones' only
            pass
    return option.default


def _batch_normalization_axis(axis, input_shape, path, name):
    """Keras 2 writes the axis it normalised as a list of positive axes ([3] for images)."""
    axes = list(axis) if isinstance(axis, (list, tuple)) else [axis]
    if len(axes) == 1 and axes[0] in (-1, len(input_shape)):
        return -1
    raise KerasFileError(f"{path}: layer {name!r} (BatchNormalization) normalises axis {axis}: dual-backend "
                         "normalises the last axis only.")


def _description(kind, arguments, name, path):
    from dual_backend.keras import layers as descriptions

    try:
        return descriptions.LAYERS[kind](**arguments, name=name)
    except DualBackendError as error:
        raise KerasFileError(f"{path}: layer {name!r}: {error}") from None


OPTIMIZER_CLASSES = {"adam": "Adam", "sgd": "SGD", "rmsprop": "RMSprop"}  # Keras' strings and classes


def _compile_settings(compile_config: dict, path) -> tuple[tuple | None, dict]:
    """Keras' ``compile_config`` as the optimizer (class name, settings) and the loss, from_logits, metrics."""
    from dual_backend import validation
    from dual_backend.keras import losses, optimizers

    optimizer = compile_config.get("optimizer")
    description = None
    if isinstance(optimizer, str):
        description = (OPTIMIZER_CLASSES[validation.optimizer_name(optimizer)], None)
    elif isinstance(optimizer, dict):
        _no_code(optimizer, path, "the optimizer")
        kind = str(optimizer.get("class_name", "")).removeprefix("Custom>")
        # Keras keeps its settings as float32 (0.001 is stored as 0.0010000000474974513): the shortest decimal
        # of the same float32 is the number that was given.
        settings = {k: float(str(np.float32(v))) if isinstance(v, float) else v
                    for k, v in (optimizer.get("config") or {}).items()
                    if k not in ("name", "is_legacy_optimizer", "jit_compile", "decay")}
        try:
            built = getattr(optimizers, kind)(**settings)
        except (DualBackendError, TypeError) as error:
            raise KerasFileError(f"{path}: its optimizer: {error}") from None
        description = (kind, built.settings)
    if description is not None and description[1] is None:
        description = (description[0], getattr(optimizers, description[0])().settings)
    loss, from_logits = compile_config.get("loss"), False
    if isinstance(loss, dict):
        _no_code(loss, path, "the loss")
        kind = loss.get("class_name")
        settings = dict(loss.get("config") or {})
        try:
            chosen = getattr(losses, kind)(**settings)
        except (DualBackendError, TypeError) as error:
            raise KerasFileError(f"{path}: its loss: {error}") from None
        loss, from_logits = chosen.name, chosen.from_logits
    metrics = []
    for metric in compile_config.get("metrics") or []:
        metric = metric[0] if isinstance(metric, list) and len(metric) == 1 else metric
        if isinstance(metric, dict):
            metric = (metric.get("config") or {}).get("name")
        metrics.append(metric)
    try:
        compiled = {"loss": None if loss is None else validation.loss_name(loss), "from_logits": from_logits,
                    "metrics": validation.metric_names(metrics)}
    except DualBackendError as error:
        raise KerasFileError(f"{path}: its compile settings: {error}") from None
    return description, compiled


def legacy_compile_config(training: dict) -> dict:
    """Keras 2's ``training_config`` in Keras 3's ``compile_config`` form."""
    return {"optimizer": training.get("optimizer_config"), "loss": training.get("loss"),
            "metrics": training.get("metrics")}


def _keras_object(module: str, class_name: str, config: dict) -> dict:
    return {"module": module, "class_name": class_name, "config": config, "registered_name": None}


FLOAT32 = _keras_object("keras", "DTypePolicy", {"name": "float32"})


def layer_config(kind: str, arguments: dict, name: str) -> dict:
    """One layer's entry in Keras 3's Sequential config."""
    from dual_backend.keras import initializers

    config = {"name": name, "trainable": True, "dtype": FLOAT32}
    for key, value in arguments.items():
        if key.endswith("_initializer") and isinstance(value, str):
            value = _keras_object("keras.initializers", initializers.SPELLINGS[value].__name__, {})
        elif isinstance(value, tuple):
            value = list(value)
        config[key] = value
    return _keras_object("keras.layers", kind, config)


def model_config(definition: dict, loss, from_logits, metrics) -> dict:
    """Keras 3's ``config.json`` of a Sequential ``definition``, with its ``compile_config`` when compiled."""
    batch_shape = [None, *definition["input_shape"]]
    layers = [_keras_object("keras.layers", "InputLayer",
                            {"batch_shape": batch_shape, "dtype": "float32", "sparse": False, "ragged": False,
                             "name": "input_layer", "optional": False})]
    layers += [layer_config(kind, arguments, name) for kind, arguments, name in definition["layers"]]
    config = {"module": "keras", "class_name": "Sequential", "registered_name": None,
              "config": {"name": definition["name"], "trainable": True, "dtype": FLOAT32, "layers": layers,
                         "build_input_shape": batch_shape},
              "build_config": {"input_shape": batch_shape}}
    if loss is not None:
        optimizer = definition.get("optimizer") or ("RMSprop", {})
        config["compile_config"] = {
            "optimizer": _keras_object("keras.optimizers", optimizer[0], {"name": optimizer[0].lower(),
                                                                         **optimizer[1]}),
            "loss": _keras_loss(loss, from_logits), "loss_weights": None, "metrics": list(metrics),
            "weighted_metrics": None, "run_eagerly": False, "steps_per_execution": 1, "jit_compile": False}
    return config


def _keras_loss(loss: str, from_logits: bool):
    """A loss by Keras' function name, or with ``from_logits`` as the config of its class."""
    from dual_backend.keras import losses

    if not from_logits:
        return loss
    kind = next(kind for kind in losses.Loss.__subclasses__() if kind.name == loss)
    return _keras_object("keras.losses", kind.__name__, {"from_logits": True})
