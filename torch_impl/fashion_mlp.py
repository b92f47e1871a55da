"""Fashion-MNIST: the first computer-vision model (course notes 000-003), ported to PyTorch Lightning.

70,000 grayscale 28x28 pictures of clothing in 10 classes.  The network
flattens each picture into 784 numbers, passes them through one hidden
layer of ReLU units and ends in 10 softmax units, one probability per class.

The exercises are options of the same program: the hidden width
(``hidden_units``), an extra hidden layer (``extra_hidden_units``), and the
two deliberate mistakes, no ``Flatten()`` (``flatten=False``) and a last
layer with too few units (``output_units=5``).
"""

from torch_impl.keras import Dense, Flatten, Input, Sequential


def build_model(input_shape=(28, 28), hidden_units=128, extra_hidden_units=None, flatten=True, output_units=10):
    # Build the model.
    layers = [Input(shape=input_shape)]
    if flatten:
        layers.append(Flatten())
    layers.append(Dense(hidden_units, activation="relu"))
    if extra_hidden_units:
        layers.append(Dense(extra_hidden_units, activation="relu"))
    layers.append(Dense(output_units, activation="softmax"))
    model = Sequential(layers)
    # Compile: Adam with Keras' defaults (ε 1e-7, Keras' update), integer labels, accuracy.
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model
