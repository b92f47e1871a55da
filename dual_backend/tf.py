"""``from dual_backend import tf``: the spellings of code written against ``tf.keras``.

``tf.keras`` is ``dual_backend.keras``; ``tf.nn.relu``, ``tf.nn.sigmoid``,
``tf.nn.softmax``, ``tf.nn.tanh``, ``tf.nn.selu`` and ``tf.nn.elu`` are its activations; ``tf.optimizers.Adam`` (and SGD,
RMSprop) its optimizers, ``tf.losses`` its losses.  So the course's cells run with only their import
changed::

    from dual_backend import tf

    model = tf.keras.models.Sequential([tf.keras.layers.Flatten(),
                                        tf.keras.layers.Dense(128, activation=tf.nn.relu),
                                        tf.keras.layers.Dense(10, activation=tf.nn.softmax)])
    model.compile(optimizer=tf.optimizers.Adam(), loss="sparse_categorical_crossentropy", metrics=["accuracy"])

Imports no framework.
"""

from types import SimpleNamespace

from dual_backend import keras
from dual_backend.keras import activations

nn = SimpleNamespace(relu=activations.relu, sigmoid=activations.sigmoid, softmax=activations.softmax,
                     tanh=activations.tanh, selu=activations.selu, elu=activations.elu)
optimizers = keras.optimizers
losses = keras.losses

__all__ = ["keras", "losses", "nn", "optimizers"]
