"""``from dual_backend import keras``: your own Keras code, built on tf.keras or on PyTorch Lightning.

    from dual_backend import keras          # DUAL_BACKEND=torch, or dual_backend.set_backend("torch")

    model = keras.Sequential([
        keras.layers.Flatten(),
        keras.layers.Dense(128, activation="relu"),
        keras.layers.Dense(10, activation="softmax"),
    ])
    model.compile(optimizer=keras.optimizers.Adam(), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x_train / 255.0, y_train, epochs=5)

A Keras 3-shaped namespace.  Importing it imports no framework; a model is
built on the backend ``keras.config.backend()`` names when its input shape
is known, as a tf.keras model (``keras_ref/user_model.py``) or a
``torch_impl.keras.Sequential`` LightningModule (``torch_impl/user_model.py``).
The model is the front end's own (``dual_backend.Model``): every argument of
``compile`` / ``fit`` / ``evaluate`` / ``predict`` and every callback hook, as
for the lessons.

Where each piece lives:

- ``layers.py`` — the layers, framework-free descriptions checked as they are
  defined; ``activations.py`` — activations by name or as functions;
  ``initializers.py`` — kernel and bias initialisers by name or as classes;
- ``optimizers.py`` — SGD, Adam, RMSprop with Keras' update rules;
  ``losses.py`` — the four losses as classes (``from_logits``) or functions;
- ``models.py`` — ``Sequential``: building once the input shape is known;
  ``Model(inputs=model.input, outputs=[layer.output ...])`` for the layers' outputs;
- ``config.py`` — which backend; ``callbacks`` — ``dual_backend.callbacks``;
- ``datasets.py`` — ``fashion_mnist`` and ``mnist``; ``utils.py`` — ``to_categorical``;
- ``preprocessing.py`` — ``ImageDataGenerator(rescale=...).flow_from_directory(...)``.

What is not covered is refused when the model is defined, naming the layer,
the argument and what is supported, in the same words on both backends.
"""

from dual_backend import callbacks
from dual_backend.keras import (activations, config, datasets, initializers, layers, losses, models, optimizers,
                                preprocessing, utils)
from dual_backend.keras.layers import Input
from dual_backend.keras.models import Model, Sequential

__all__ = ["Input", "Model", "Sequential", "activations", "callbacks", "config", "datasets", "initializers", "layers",
           "losses", "models", "optimizers", "preprocessing", "utils"]
