"""Keras' model files, read and written without TensorFlow: the ``.keras`` archive and the legacy ``.h5``.

A ``.keras`` file (Keras 3's ``model.save``) is a zip of ``config.json`` (the
model's layers and its ``compile`` settings), ``metadata.json`` (Keras'
version) and ``model.weights.h5``, whose variables sit at
``layers/<layer name>/vars/<i>`` and ``optimizer/vars/<i>``.  A legacy
``.h5`` file (``model.save('x.h5')`` in Keras 2, the course's era, or Keras 3)
holds the same config in its ``model_config`` attribute, the compile settings
in ``training_config``, and the weights at ``model_weights/<layer>/<weight name>``
in the order of each layer's ``weight_names``.

:func:`read` gives a :class:`SavedModel`: the layers as a ``dual_backend.keras``
definition (``dual_backend.keras_config`` translates the config;
``dual_backend.keras.models.from_definition`` builds it on either
backend, each layer checked as a layer written in code is), the weights in
Keras' layout and order (``Model.get_weights``), the compile settings and the
optimizer's variables.  :func:`write` writes such a record as a ``.keras``
archive that ``keras.models.load_model(path, safe_mode=True)`` loads.

Nothing from a file runs: a ``Lambda`` layer, a custom layer, function or
object (``registered_name``) is refused by name, as Keras' ``safe_mode``
refuses them; h5py reads arrays, never pickles.  Every error names the file and
the layer, and nothing is built from a file that fails a check.
"""

from __future__ import annotations

import datetime
import io
import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from dual_backend import keras_config
from dual_backend.errors import DualBackendError
from dual_backend.interrupts import atomic_write
from dual_backend.keras_config import KerasFileError

# The members of a .keras archive (keras/src/saving/saving_lib.py).
CONFIG, METADATA, WEIGHTS = "config.json", "metadata.json", "model.weights.h5"
# The Keras version the written files say they come from: the one the project pins (tensorflow 2.21).
KERAS_VERSION = "3.15.1"
HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
DUAL_BACKEND = "dual_backend.json"  # stored beside Keras' own members: the lesson, its variant and options
# Keras' optimizer variables per trainable weight, in the order Keras keeps them after ``iteration`` and
# ``learning_rate``: Adam one (momentum, velocity) pair per weight; RMSprop every velocity, then every
# momentum (with momentum); SGD every momentum (with momentum).
SLOTS_INTERLEAVED = {"Adam": True, "RMSprop": False, "SGD": False}


@dataclass
class SavedModel:
    """A Keras model file's content.

    ``definition``: ``{"name", "input_shape", "layers": [(class name, arguments, layer name)],
    "optimizer": (class name, settings) or None}``, as ``dual_backend.keras`` models describe themselves;
    ``weights``: float32 arrays in Keras' layout and order; ``loss`` (Keras' function name), ``from_logits``,
    ``metrics`` (names): the compile settings, ``loss`` None when the model was not compiled;
    ``optimizer_variables``: Keras' optimizer variables in its order (iteration, learning rate,
    then the slots), [] when the file holds none; ``dual_backend``: what dual-backend stored beside
    Keras' own files (the lesson, its variant and options), {} for a file of plain Keras.
    """

    path: str
    definition: dict
    weights: list
    loss: str | None = None
    from_logits: bool = False
    metrics: list = field(default_factory=list)
    optimizer_variables: list = field(default_factory=list)
    dual_backend: dict = field(default_factory=dict)
    keras_version: str = ""

    @property
    def trainable_weights(self) -> list:
        """The weights an optimizer updates, in Keras' order (every weight but BatchNormalization's
        moving mean and variance)."""
        chosen, index = [], 0
        for kind, arguments, _ in self.definition["layers"]:
            count = weight_count(kind, arguments)
            chosen += self.weights[index:index + min(count, 2)]
            index += count
        return chosen


def weight_count(kind: str, arguments: dict) -> int:
    """How many arrays a layer holds, in Keras' order: Dense and Conv2D their kernel, then their bias
    unless ``use_bias=False``; BatchNormalization gamma, beta, moving mean, moving variance (the first
    two trained); the other layers none."""
    if kind in ("Dense", "Conv2D"):
        return 2 if arguments.get("use_bias", True) else 1
    return 4 if kind == "BatchNormalization" else 0


def is_keras_file(path) -> bool:
    """Whether ``path`` is named as Keras names its model files (``.keras``, ``.h5``, ``.hdf5``)."""
    return Path(path).suffix in (".keras", ".h5", ".hdf5")


# ---------------------------------------------------------------------------------------------- reading


def read(path) -> SavedModel:
    """The model in a ``.keras`` archive or a legacy ``.h5`` file, checked whole before anything is built.

    Raises :class:`KerasFileError` (a ``DualBackendError``) naming the file, and the layer where one
    is at fault: a missing, truncated or tampered file, a config that is not a ``Sequential`` of
    supported layers, a layer that would run code, a missing or extra weight, a shape that does not
    match the config.
    """
    path = Path(path)
    if not path.is_file():
        raise KerasFileError(f"{path} does not exist (or is not a file).")
    with open(path, "rb") as stream:
        head = stream.read(8)
    if head[:4] == b"PK\x03\x04" or zipfile.is_zipfile(path):
        return _read_archive(path)
    if head == HDF5_SIGNATURE:
        return _read_legacy_h5(path)
    raise not_a_model_file(path)


def not_a_model_file(path) -> KerasFileError:
    """The error for a file named as a Keras model that is neither kind, in the same words on both backends."""
    return KerasFileError(f"{path} is neither a .keras archive (a zip) nor a legacy Keras .h5 file: it is truncated, "
                          "corrupted or of another kind. Save the model again with model.save(...).")


def read_definition(path) -> dict | None:
    """Only the ``dual_backend.keras`` definition a Keras model file's config describes (no weights read),
    or None when the file is not a Sequential of layers dual-backend builds."""
    path = Path(path)
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                config = _json(archive.read(CONFIG), path, CONFIG)
        else:
            with _h5py().File(path, "r") as stored:
                config = _json(stored.attrs["model_config"], path, "model_config")
    except (DualBackendError, KeyError, OSError, zipfile.BadZipFile):
        return None
    return _built_definition(config, path)


def _built_definition(config: dict, path) -> dict | None:
    """The definition of a model config, or None when it is not a Sequential of layers dual-backend builds."""
    for settings in (config.get("compile_config"), None):  # without the compile settings, if they are not taken
        try:
            return keras_config.definition({**config, "compile_config": settings}, path)[0]
        except DualBackendError:
            continue
    return None


def _archive_members(path: Path) -> tuple[dict, dict, dict, bytes]:
    """A ``.keras`` archive's config, metadata, dual-backend entry and weights file, each checked whole."""
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
            for member in (CONFIG, WEIGHTS):
                if member not in names:
                    raise KerasFileError(f"{path} is not a whole .keras archive: it has no {member}. "
                                         "Save the model again.")
            config = _json(archive.read(CONFIG), path, CONFIG)
            metadata = _json(archive.read(METADATA), path, METADATA) if METADATA in names else {}
            extra = _json(archive.read(DUAL_BACKEND), path, DUAL_BACKEND) if DUAL_BACKEND in names else {}
            weights_file = archive.read(WEIGHTS)
    except (zipfile.BadZipFile, EOFError, OSError) as error:  # also a member whose CRC does not match
        raise KerasFileError(f"{path} is not a readable .keras archive ({error}): it is truncated or corrupted. "
                             "Save the model again.") from None
    return config, metadata, extra, weights_file


def _read_archive(path: Path) -> SavedModel:
    config, metadata, extra, weights_file = _archive_members(path)
    definition, compiled = keras_config.definition(config, path)
    arrays, optimizer_variables = _read_weights_h5(io.BytesIO(weights_file), definition, path, WEIGHTS)
    return _checked(SavedModel(str(path), definition, arrays, **compiled, optimizer_variables=optimizer_variables,
                               dual_backend=extra, keras_version=str(metadata.get("keras_version", ""))))


def _read_weights_h5(source, definition: dict, path, member: str | None) -> tuple[list, list]:
    """Each layer's arrays (one list per layer) and the optimizer's variables from Keras 3's weights HDF5:
    a ``.keras`` archive's ``model.weights.h5`` (``member``), or a ``.weights.h5`` file of ``save_weights``
    (``member`` None)."""
    h5py = _h5py()
    where = f"{path}: its {member}" if member else str(path)
    try:
        with h5py.File(source, "r") as weights:
            layer_groups = weights.get("layers")
            arrays = []
            for (kind, _, name), stored_as in zip(definition["layers"], archive_names(definition)):
                group = layer_groups.get(stored_as) if layer_groups is not None else None
                if group is None:
                    raise KerasFileError(f"{path}: layer {name!r} ({kind}) has no weights in {member or 'the file'}: "
                                         "it does not match the model. Save it again.")
                arrays.append(_numbered(group.get("vars"), path, name, kind))
            optimizer = weights.get("optimizer")
            optimizer_variables = _numbered(optimizer.get("vars"), path, "optimizer", "optimizer") \
                if optimizer is not None else []
    except OSError as error:
        raise KerasFileError(f"{where} is not a readable HDF5 file ({error}): it is truncated or "
                             "corrupted. Save it again.") from None
    return arrays, optimizer_variables


def read_weights(path, definition: dict) -> tuple[list, list]:
    """A ``.weights.h5`` file (Keras 3's ``model.save_weights``) for the model ``definition`` describes:
    the weights in Keras' layout and order, and the optimizer's variables ([] when it holds none).
    Raises :class:`KerasFileError` naming the file and the layer when it does not fit the model."""
    path = Path(path)
    if not path.is_file():
        raise KerasFileError(f"No weights at {path} (no such file): give the path of a file model.save_weights "
                             "wrote.")
    arrays, optimizer_variables = _read_weights_h5(path, definition, path, None)
    return _checked(SavedModel(str(path), definition, arrays), weights_file=True).weights, optimizer_variables


def _legacy_config(stored, path: Path) -> dict:
    if "model_config" not in stored.attrs:
        raise KerasFileError(f"{path} is an HDF5 file without a model_config: it holds weights only "
                             "(model.save_weights), not a model. Load it into a model built in code "
                             "with model.load_weights, or save the whole model with model.save(...).")
    return _json(stored.attrs["model_config"], path, "model_config")


def _unreadable_hdf5(path: Path, error: OSError) -> KerasFileError:
    return KerasFileError(f"{path} is not a readable HDF5 file ({error}): it is truncated or corrupted. "
                          "Save the model again.")


def _read_legacy_h5(path: Path) -> SavedModel:
    h5py = _h5py()
    try:
        with h5py.File(path, "r") as stored:
            config = _legacy_config(stored, path)
            training = stored.attrs.get("training_config")
            if training is not None:
                training = _json(training, path, "training_config")
                config["compile_config"] = keras_config.legacy_compile_config(training)
            definition, compiled = keras_config.definition(config, path)
            arrays = _legacy_arrays(stored, definition, path)
            optimizer = stored.get("optimizer_weights")
            names = [] if optimizer is None else [_text(n) for n in optimizer.attrs.get("weight_names", [])]
            optimizer_variables = [np.asarray(optimizer[n]) for n in names]
            if names and definition["optimizer"] and not any(n.endswith(("learning_rate", "learning_rate:0"))
                                                             for n in names):
                # Keras 2 keeps no learning-rate variable: Keras 3's comes second, after the iteration count.
                optimizer_variables.insert(1, np.float32(definition["optimizer"][1]["learning_rate"]))
            version = _text(stored.attrs.get("keras_version", ""))
    except OSError as error:
        raise _unreadable_hdf5(path, error) from None
    return _checked(SavedModel(str(path), definition, arrays, **compiled, optimizer_variables=optimizer_variables,
                               keras_version=version))


def _legacy_arrays(stored, definition: dict, path) -> list:
    """Each layer's arrays (one list per layer) from a legacy ``.h5`` file, found by layer name."""
    group = stored.get("model_weights", stored)  # model.save writes model_weights/; older files the root
    arrays = []
    for kind, _, name in definition["layers"]:
        layer = group.get(name)
        if layer is None:
            raise KerasFileError(f"{path}: layer {name!r} ({kind}) has no weights in the file: it does not "
                                 "match its config. Save the model again.")
        arrays.append(_named(layer, path, name, kind))
    return arrays


def check(path) -> dict | None:
    """The checks :func:`read` makes, for a file of any model: a file that is not a whole ``.keras``
    archive or legacy ``.h5`` model is refused; in a ``Sequential`` of layers dual-backend builds, a
    missing weight or a shape off the config too.  The keras backend runs this before tf.keras loads a
    file (tf.keras loads more kinds of model than the torch port builds), so that a broken file gets the
    same words on both backends.  Returns the file's definition (``read_definition``'s), or None.
    Raises :class:`KerasFileError` naming the file, and the layer."""
    path = Path(path)
    if not path.is_file():
        return None  # the caller says what it needed
    with open(path, "rb") as stream:
        head = stream.read(8)
    if head[:4] == b"PK\x03\x04" or zipfile.is_zipfile(path):
        config, _, _, weights_file = _archive_members(path)
        definition = _built_definition(config, path)
        if definition is not None:
            arrays, _ = _read_weights_h5(io.BytesIO(weights_file), definition, path, WEIGHTS)
            _checked(SavedModel(str(path), definition, arrays))
        return definition
    if head != HDF5_SIGNATURE:
        raise not_a_model_file(path)
    try:
        with _h5py().File(path, "r") as stored:
            definition = _built_definition(_legacy_config(stored, path), path)
            if definition is not None:
                _checked(SavedModel(str(path), definition, _legacy_arrays(stored, definition, path)))
    except OSError as error:
        raise _unreadable_hdf5(path, error) from None
    return definition


def archive_names(definition: dict) -> list[str]:
    """Where each layer's variables sit under ``layers/`` in ``model.weights.h5``: Keras names them by class
    and position, not by the layer's name (dense, dense_1, ... in the model's order;
    ``saving_lib._save_container_state``)."""
    from dual_backend.keras.layers import snake_case

    used: dict[str, int] = {}
    names = []
    for kind, _, _ in definition["layers"]:
        base = snake_case(kind)
        used[base] = used.get(base, -1) + 1
        names.append(base if used[base] == 0 else f"{base}_{used[base]}")
    return names


def _numbered(group, path, name, kind) -> list:
    """A Keras 3 ``vars`` group's arrays, in the order of their numbers."""
    if group is None:
        raise KerasFileError(f"{path}: {name!r} ({kind}) has no vars group in {WEIGHTS}. Save the model again.")
    try:
        keys = sorted(group.keys(), key=int)
    except ValueError:
        raise KerasFileError(f"{path}: {name!r} ({kind}) holds variables not numbered as Keras numbers them "
                             f"({', '.join(group.keys())}). Save the model again.") from None
    return [np.asarray(group[key]) for key in keys]


def _named(group, path, name, kind) -> list:
    """A legacy layer group's arrays, in the order of its ``weight_names`` attribute."""
    arrays = []
    for weight_name in group.attrs.get("weight_names", []):
        weight_name = _text(weight_name)
        if weight_name not in group:
            raise KerasFileError(f"{path}: layer {name!r} ({kind}) lists the weight {weight_name!r} but the file does "
                                 "not hold it. Save the model again.")
        arrays.append(np.asarray(group[weight_name]))
    return arrays


def _checked(saved: SavedModel, weights_file: bool = False) -> SavedModel:
    """Every layer's arrays: as many as Keras gives the layer, of the shapes the config implies (for a
    ``.weights.h5`` file, ``weights_file``: the shapes the model it is loaded into needs)."""
    from dual_backend.keras import layers as descriptions

    shape, flat = saved.definition["input_shape"], []
    channels_first = keras_config.channels_first([kind for kind, _, _ in saved.definition["layers"]])
    for (kind, arguments, name), arrays in zip(saved.definition["layers"], saved.weights):
        layer = descriptions.LAYERS[kind](**arguments, name=name)
        expected = expected_shapes(kind, arguments, shape)
        found = [tuple(a.shape) for a in arrays]
        if found != expected and weights_file:
            raise KerasFileError(
                f"{saved.path}: layer {name!r} ({kind}) gets weights of shapes {found or 'none'} from the file, but "
                f"this model's layer needs {expected or 'none'}: the file was saved from another model. Load it "
                "into the model that saved it, or load this model's own weights.")
        if found != expected:
            raise KerasFileError(
                f"{saved.path}: layer {name!r} ({kind}) holds weights of shapes {found or 'none'}, but its config "
                f"implies {expected or 'none'}: the file is tampered with or does not match its config.")
        flat += [np.asarray(a, dtype=np.float32) for a in arrays]
        shape = layer.compute_output_shape(shape, channels_first)
    saved.weights = flat
    return saved


def expected_shapes(kind: str, arguments: dict, input_shape: tuple) -> list[tuple]:
    """The shapes of a layer's weights in Keras' layout for one sample's ``input_shape``."""
    if kind == "Dense":
        return [(input_shape[-1], arguments["units"]), (arguments["units"],)][:weight_count(kind, arguments)]
    if kind == "Conv2D":
        return [(*arguments["kernel_size"], input_shape[-1], arguments["filters"]),
                (arguments["filters"],)][:weight_count(kind, arguments)]
    if kind == "BatchNormalization":
        return [(input_shape[-1],)] * 4
    return []


def _json(raw, path, member) -> dict:
    try:
        value = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as error:
        raise KerasFileError(f"{path}: its {member} is not valid JSON ({error}). Save the model again.") from None
    if not isinstance(value, dict):
        raise KerasFileError(f"{path}: its {member} is not a JSON object. Save the model again.")
    return value


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _h5py():
    try:
        import h5py
    except ImportError:  # pragma: no cover - h5py comes with either backend's extras
        raise DualBackendError("Reading and writing Keras model files needs h5py: pip install h5py.") from None
    return h5py


# ---------------------------------------------------------------------------------------------- writing


def write(path, definition: dict, weights: list, loss: str | None = None, from_logits: bool = False,
          metrics: list | None = None, optimizer_variables: list | None = None, dual_backend: dict | None = None):
    """A ``.keras`` archive of ``definition`` with ``weights`` (Keras' layout and order), whole or not at all.

    The config is Keras 3's (``keras.Sequential.get_config`` with every layer's config as its
    ``get_config`` writes it), so ``keras.models.load_model(path, safe_mode=True)`` builds the same
    model; ``loss`` / ``metrics`` and ``definition["optimizer"]`` become ``compile_config``, and
    ``optimizer_variables`` (Keras' order: iteration, learning rate, slots) the optimizer's state.
    """
    path = Path(path)
    if path.suffix != ".keras":
        raise DualBackendError(f"Keras model files are written as .keras archives, got {path}.")
    config = keras_config.model_config(definition, loss, from_logits, metrics or [])
    buffer = io.BytesIO()
    _write_weights_h5(buffer, definition, weights, optimizer_variables)

    def write_archive(temporary):
        with zipfile.ZipFile(temporary, "w") as archive:
            saved_on = datetime.datetime.now().strftime("%Y-%m-%d@%H:%M:%S")  # Keras' own format (saving_lib.py)
            archive.writestr(METADATA, json.dumps({"keras_version": KERAS_VERSION, "date_saved": saved_on}))
            archive.writestr(CONFIG, json.dumps(config))
            archive.writestr(WEIGHTS, buffer.getvalue())
            if dual_backend:
                archive.writestr(DUAL_BACKEND, json.dumps(dual_backend))

    atomic_write(path, write_archive)


def _write_weights_h5(target, definition: dict, weights: list, optimizer_variables: list | None) -> None:
    """Keras 3's weights HDF5 (``model.weights.h5`` in the archive, or ``save_weights``' file): each layer's
    variables at ``layers/<class, numbered>/vars/<i>``, the optimizer's at ``optimizer/vars/<i>``."""
    with _h5py().File(target, "w") as stored:
        layers = stored.create_group("layers")
        arrays = iter(weights)
        for (kind, arguments, name), stored_as in zip(definition["layers"], archive_names(definition)):
            variables = layers.create_group(stored_as).create_group("vars")
            variables.attrs["name"] = name
            for index in range(weight_count(kind, arguments)):
                variables.create_dataset(str(index), data=np.asarray(next(arrays), dtype=np.float32))
        if optimizer_variables:
            variables = stored.create_group("optimizer").create_group("vars")
            variables.attrs["name"] = definition["optimizer"][0].lower()
            for index, array in enumerate(optimizer_variables):
                variables.create_dataset(str(index), data=np.asarray(array))
        stored.create_group("vars").attrs["name"] = definition["name"]


def write_weights(path, definition: dict, weights: list, optimizer_variables: list | None = None) -> None:
    """A ``.weights.h5`` file as Keras 3's ``model.save_weights`` writes it, whole or not at all."""
    path = Path(path)
    if not path.name.endswith(".weights.h5"):
        raise DualBackendError(f"The filename must end in `.weights.h5`. Received: filepath={path}")
    atomic_write(path, lambda temporary: _write_weights_h5(temporary, definition, weights, optimizer_variables))


def write_legacy_h5(path, definition: dict, weights: list, loss=None, from_logits=False, metrics=None) -> None:
    """A legacy ``.h5`` model file as Keras 3 writes one for ``model.save('x.h5')`` (the model's config in
    ``model_config``, its compile settings in ``training_config``, each layer's weights under
    ``model_weights/<layer>/<model>/<layer>/<variable>``), whole or not at all."""
    config = keras_config.model_config(definition, loss, from_logits, metrics or [])
    compiled = config.pop("compile_config", None)
    model = definition["name"]

    def write(temporary):
        with _h5py().File(temporary, "w") as stored:
            stored.attrs["backend"], stored.attrs["keras_version"] = "tensorflow", KERAS_VERSION
            stored.attrs["model_config"] = json.dumps(config)
            if compiled:
                stored.attrs["training_config"] = json.dumps(
                    {"loss": compiled["loss"], "metrics": compiled["metrics"], "weighted_metrics": None,
                     "loss_weights": None, "optimizer_config": compiled["optimizer"]})
            group = stored.create_group("model_weights")
            group.attrs["backend"], group.attrs["keras_version"] = "tensorflow", KERAS_VERSION
            group.attrs["layer_names"] = [name.encode() for _, _, name in definition["layers"]]
            arrays = iter(weights)
            for kind, arguments, name in definition["layers"]:
                layer = group.create_group(name)
                variables = VARIABLE_NAMES.get(kind, ())[:weight_count(kind, arguments)]
                names = [f"{model}/{name}/{variable}" for variable in variables]
                layer.attrs["weight_names"] = [n.encode() for n in names]
                for weight_name in names:
                    layer.create_dataset(weight_name, data=np.asarray(next(arrays), dtype=np.float32))
            group.create_group("top_level_model_weights").attrs["weight_names"] = []

    atomic_write(Path(path), write)


# Keras' names of each layer's variables, in its order.
VARIABLE_NAMES = {"Dense": ("kernel", "bias"), "Conv2D": ("kernel", "bias"),
                  "BatchNormalization": ("gamma", "beta", "moving_mean", "moving_variance")}


def optimizer_slot_names(kind: str, settings: dict) -> tuple[str, ...]:
    """The slots Keras keeps per trainable weight for an optimizer (``keras/src/optimizers``)."""
    if kind == "Adam":
        return ("momentum", "velocity")
    if kind == "RMSprop":
        return ("velocity", "momentum") if settings.get("momentum") else ("velocity",)
    return ("momentum",) if settings.get("momentum") else ()


def slots_from_variables(kind: str, settings: dict, variables: list, weights: int) -> tuple[int, dict]:
    """Keras' optimizer variables (iteration, learning rate, slots) as (iterations, {slot: [array per weight]})."""
    names = optimizer_slot_names(kind, settings)
    slots = variables[2:]
    if not slots:  # an optimizer that has taken no step: Keras writes its step count and learning rate only
        return int(np.asarray(variables[0])), {}
    if len(slots) != len(names) * weights:
        raise DualBackendError(f"The {kind} optimizer's variables in the file are {len(slots)} arrays; "
                               f"{len(names) * weights} were expected for {weights} trained weights.")
    if SLOTS_INTERLEAVED.get(kind):
        per_slot = {name: slots[index::len(names)] for index, name in enumerate(names)}
    else:
        per_slot = {name: slots[index * weights:(index + 1) * weights] for index, name in enumerate(names)}
    return int(np.asarray(variables[0])), per_slot


def variables_from_slots(kind: str, settings: dict, iterations: int, slots: dict, weights: int) -> list:
    """The inverse of :func:`slots_from_variables`: Keras' optimizer variables in its order."""
    names = optimizer_slot_names(kind, settings)
    head = [np.asarray(iterations, dtype=np.int64), np.asarray(settings["learning_rate"], dtype=np.float32)]
    if SLOTS_INTERLEAVED.get(kind):
        return head + [slots[name][index] for index in range(weights) for name in names]
    return head + [array for name in names for array in slots[name]]
