"""A model written with ``dual_backend.keras``, built with tf.keras.

Mirror of ``torch_impl/user_model.py``.  The descriptions hold only
arguments Keras itself takes, with Keras' values, so each becomes the tf.keras
layer of the same class, with the same arguments and name.
"""

import tensorflow as tf

from keras_ref.backend import KerasModel as Model  # the front end's model on this backend

__all__ = ["Model", "build_model", "built_layers", "optimizer", "pipeline"]


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


LABEL_MODES = {"binary": "binary", "categorical": "categorical", "sparse": "int"}  # flow_from_directory's names


def pipeline(flow, repeat: bool, model=None):
    """A ``flow_from_directory`` description as a tf.data pipeline: Keras' folder reader, then ``rescale``;
    repeated when ``fit`` reads it on across epochs (``steps_per_epoch``)."""
    dataset = tf.keras.utils.image_dataset_from_directory(
        flow.directory, label_mode=LABEL_MODES[flow.class_mode], color_mode="rgb", image_size=flow.target_size,
        batch_size=flow.batch_size, shuffle=flow.shuffle, seed=flow.seed, verbose=False)
    if flow.rescale is not None:
        rescale = flow.rescale
        dataset = dataset.map(lambda x, y: (x * rescale, y))
    return (dataset.repeat() if repeat else dataset).prefetch(tf.data.AUTOTUNE)
