"""A model written with ``dual_backend.keras``, built as a ``torch_impl.keras.Sequential`` LightningModule.

Mirror of ``keras_ref/user_model.py``.  Each description becomes the
``torch_impl.keras`` layer of the same class; the arguments a description
takes only at Keras' defaults (initialisers, ``use_bias``, ``padding``, ...)
are the defaults those layers are written with.
"""

import functools

from torch_impl.backend import TorchModel as Model  # the front end's model on this backend
from torch_impl.keras import (Activation, AlphaDropout, AveragePooling2D, BatchNormalization, Conv2D, Dense, Dropout,
                              Flatten, GlobalAveragePooling2D, Input, KerasAdam, KerasRMSprop, KerasSGD, MaxPooling2D,
                              Rescaling, Reshape, Sequential)

LAYERS = {
    "Flatten": lambda a: Flatten(),
    "Dense": lambda a: Dense(a["units"], activation=a["activation"]),
    "Conv2D": lambda a: Conv2D(a["filters"], a["kernel_size"], activation=a["activation"], strides=a["strides"],
                               padding=a["padding"]),
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
