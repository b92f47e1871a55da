"""MNIST to 99%, then stop (course note 000, exercise), ported to PyTorch Lightning.

Handwritten digits instead of clothes, and a callback: after every epoch it
looks at the training accuracy and, above 99%, prints the course's sentence
and stops training.  The callback is ``dual_backend.StopTraining``, a
Keras-style callback that runs unchanged on both backends; the lesson's spec
declares its rule.
"""

from torch_impl.keras import Dense, Flatten, Input, Sequential


def build_model(input_shape=(28, 28), hidden_units=128):
    # Build the model.
    model = Sequential([
        Input(shape=input_shape),
        Flatten(),
        Dense(hidden_units, activation="relu"),
        Dense(10, activation="softmax"),
    ])
    # Compile: as the exercise's template gives it.
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model
