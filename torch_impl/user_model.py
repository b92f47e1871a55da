"""A model written with ``dual_backend.keras``, built as a ``torch_impl.keras.Sequential`` LightningModule.

Mirror of ``keras_ref/user_model.py``.  Each description becomes the
``torch_impl.keras`` layer of the same class; the arguments a description
takes only at Keras' defaults (BatchNormalization's initialisers, the regularisers, ...)
are the defaults those layers are written with.
"""

import functools

import torch
from torch.utils.data import DataLoader
from torchvision import datasets, transforms

from torch_impl.backend import Repeat
from torch_impl.backend import TorchModel as Model  # the front end's model on this backend
from torch_impl.horse_or_human import WORKERS, binary_label, to_rgb
from torch_impl.keras import (Activation, AlphaDropout, AveragePooling2D, BatchNormalization, Conv2D, Dense, Dropout,
                              Flatten, GlobalAveragePooling2D, Input, KerasAdam, KerasRMSprop, KerasSGD, MaxPooling2D,
                              Rescaling, Reshape, Sequential)

__all__ = ["Model", "build_model", "built_layers", "definition_of", "optimizer", "pipeline"]

LAYERS = {
    "Flatten": lambda a: Flatten(),
    "Dense": lambda a: Dense(a["units"], activation=a["activation"], kernel_initializer=a["kernel_initializer"],
                             bias_initializer=a["bias_initializer"], use_bias=a["use_bias"]),
    "Conv2D": lambda a: Conv2D(a["filters"], a["kernel_size"], activation=a["activation"], strides=a["strides"],
                               padding=a["padding"], kernel_initializer=a["kernel_initializer"],
                               bias_initializer=a["bias_initializer"], use_bias=a["use_bias"]),
    "MaxPooling2D": lambda a: MaxPooling2D(a["pool_size"], a["strides"], padding=a["padding"]),
    "AveragePooling2D": lambda a: AveragePooling2D(a["pool_size"], a["strides"], padding=a["padding"]),
    "GlobalAveragePooling2D": lambda a: GlobalAveragePooling2D(),
    "Reshape": lambda a: Reshape(a["target_shape"]),
    "Rescaling": lambda a: Rescaling(a["scale"], a["offset"]),
    "BatchNormalization": lambda a: BatchNormalization(momentum=a["momentum"], epsilon=a["epsilon"]),
    "Dropout": lambda a: Dropout(a["rate"]),
    "AlphaDropout": lambda a: AlphaDropout(a["rate"]),
    "Activation": lambda a: Activation(a["activation"]),
}


def build_model(layers, input_shape, name):
    torch_layers = [Input(shape=input_shape)]
    for layer in layers:
        torch_layers.append(LAYERS[type(layer).__name__](layer.arguments))
    return Sequential(torch_layers, name=name, layer_names=[layer.name for layer in layers])


# Each torch_impl.keras layer's settings by the names of Keras' arguments: the inverse of LAYERS.
ARGUMENTS = {
    "Flatten": lambda l: {},
    "Dense": lambda l: {"units": l.units, "activation": l.activation, "use_bias": l.use_bias,
                        "kernel_initializer": l.kernel_initializer, "bias_initializer": l.bias_initializer},
    "Conv2D": lambda l: {"filters": l.filters, "kernel_size": l.kernel_size, "strides": l.strides,
                         "padding": l.padding, "activation": l.activation, "use_bias": l.use_bias,
                         "kernel_initializer": l.kernel_initializer, "bias_initializer": l.bias_initializer},
    "MaxPooling2D": lambda l: {"pool_size": l.pool_size, "strides": l.strides, "padding": l.padding},
    "AveragePooling2D": lambda l: {"pool_size": l.pool_size, "strides": l.strides, "padding": l.padding},
    "GlobalAveragePooling2D": lambda l: {},
    "Reshape": lambda l: {"target_shape": l.target_shape},
    "Rescaling": lambda l: {"scale": l.scale, "offset": l.offset},
    "BatchNormalization": lambda l: {"momentum": l.momentum, "epsilon": l.epsilon},
    "Dropout": lambda l: {"rate": l.rate},
    "AlphaDropout": lambda l: {"rate": l.rate},
    "Activation": lambda l: {"activation": l.activation},
}
# Keras' optimizer settings of the torch optimizers the lessons compile with (torch_impl.keras.RMSprop).
SETTINGS = {"lr": "learning_rate", "eps": "epsilon", "rho": "rho", "momentum": "momentum", "beta_1": "beta_1",
            "beta_2": "beta_2", "nesterov": "nesterov"}


def definition_of(model) -> dict:
    """A torch model's layers, optimizer and name as a ``dual_backend.keras`` definition (what
    ``Sequential.definition()`` gives), for a lesson's port as for a model of your own: what
    ``dual_backend.keras_file.write`` turns into Keras' config."""
    from dual_backend.keras import layers as descriptions
    from dual_backend.keras import optimizers

    module = model.module
    layers = []
    for layer, name in zip(module.body, module.layer_names):
        description = descriptions.LAYERS[layer.keras_type](**ARGUMENTS[layer.keras_type](layer), name=name)
        layers.append((layer.keras_type, description.arguments, name))
    optimizer = getattr(model, "optimizer_description", None)
    if optimizer is not None:
        chosen = (type(optimizer).__name__, optimizer.settings)
    elif isinstance(model.optimizer, str):
        kind = {"adam": "Adam", "sgd": "SGD", "rmsprop": "RMSprop"}[model.optimizer]
        chosen = (kind, getattr(optimizers, kind)().settings)
    elif model.optimizer is not None:  # a lesson's torch_impl.keras.RMSprop(...)
        kind = {"rmsprop": "RMSprop"}[model.optimizer.name]
        chosen = (kind, getattr(optimizers, kind)(**{SETTINGS[k]: v for k, v in model.optimizer.settings.items()})
                  .settings)
    else:
        chosen = None
    return {"name": module.model_name, "input_shape": tuple(module.input_shape[1:]), "layers": layers,
            "optimizer": chosen}


def built_layers(module) -> list:
    """The module's layers, one per description, in order."""
    return list(module.body)


OPTIMIZERS = {
    "SGD": lambda s: functools.partial(KerasSGD, lr=s["learning_rate"], momentum=s["momentum"],
                                       nesterov=s["nesterov"]),
    "Adam": lambda s: functools.partial(KerasAdam, lr=s["learning_rate"], beta_1=s["beta_1"], beta_2=s["beta_2"],
                                        eps=s["epsilon"]),
    "RMSprop": lambda s: functools.partial(KerasRMSprop, lr=s["learning_rate"], rho=s["rho"], eps=s["epsilon"],
                                           momentum=s["momentum"]),
}


def optimizer(description):
    """``keras.optimizers.Adam(...)`` as the Keras-rule optimizer to make once the parameters exist."""
    return OPTIMIZERS[type(description).__name__](description.settings)


class Pixels:
    """An image's pixels as floats times ``rescale`` (None: 0-255 as read), CHW for a model that holds
    images channels first, else Keras' HWC."""

    def __init__(self, rescale, channels_first: bool):
        self.rescale, self.channels_first = rescale, channels_first

    def __call__(self, image):
        pixels = transforms.functional.pil_to_tensor(image).to(torch.get_default_dtype())
        pixels = pixels if self.channels_first else pixels.permute(1, 2, 0)
        return pixels if self.rescale is None else pixels * self.rescale


def one_hot(index, classes: int):
    return torch.nn.functional.one_hot(torch.tensor(index), classes).to(torch.get_default_dtype())


def pipeline(flow, repeat: bool, model):
    """A ``flow_from_directory`` description as torchvision's ``ImageFolder`` in a ``DataLoader``;
    a :class:`Repeat` of it when ``fit`` reads it on across epochs (``steps_per_epoch``)."""
    labels = {"binary": binary_label, "categorical": functools.partial(one_hot, classes=len(flow.counts)),
              "sparse": None}[flow.class_mode]
    folder = datasets.ImageFolder(flow.directory, target_transform=labels, transform=transforms.Compose(
        [transforms.Lambda(to_rgb), Pixels(flow.rescale, model.module.channels_first)]))
    generator = torch.Generator().manual_seed(flow.seed) if flow.seed is not None else None
    loader = DataLoader(folder, batch_size=flow.batch_size, shuffle=flow.shuffle, generator=generator,
                        num_workers=WORKERS, persistent_workers=WORKERS > 0 and repeat)
    return Repeat(loader) if repeat else loader
