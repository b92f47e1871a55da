"""A model written with ``dual_backend.keras``, built with tf.keras.

Mirror of ``torch_impl/user_model.py``.  The descriptions hold only
arguments Keras itself takes, with Keras' values, so each becomes the tf.keras
layer of the same class, with the same arguments and name.
"""

import tensorflow as tf

from keras_ref.backend import KerasModel as Model  # the front end's model on this backend


def build_model(layers, input_shape, name):
    keras_layers = [tf.keras.Input(shape=input_shape)]
    for layer in layers:
        keras_layers.append(getattr(tf.keras.layers, type(layer).__name__)(**layer.arguments, name=layer.name))
    return tf.keras.Sequential(keras_layers, name=name)


def built_layers(model) -> list:
    """The model's layers, one per description, in order."""
    return list(model.layers)


def optimizer(description):
    """``keras.optimizers.Adam(...)`` as tf.keras' own Adam with the same settings."""
    return getattr(tf.keras.optimizers, type(description).__name__)(**description.settings)
