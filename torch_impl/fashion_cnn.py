"""Fashion-MNIST with convolutions (course note 003, section 4), ported to PyTorch Lightning.

The same pictures as fashion_mlp, given a channel axis (28x28x1).  Before the
dense layers, two convolutions learn 3x3 filters and two max-poolings halve
the picture each time, so the dense part sees features instead of pixels:
28 → 26 (conv) → 13 (pool) → 11 (conv) → 5 (pool).

The exercises are options: ``filters`` of the first convolution, the number
of convolution+pooling blocks (``conv_layers``), and ``drop_last_conv``,
which deletes the last ``Conv2D`` line and keeps its pooling.
"""

from torch_impl.keras import Conv2D, Dense, Flatten, Input, MaxPooling2D, Sequential


def build_model(input_shape=(28, 28, 1), filters=64, conv_layers=2, drop_last_conv=False):
    # Build the model: convolution+pooling blocks, then the dense classifier.
    layers = [Input(shape=input_shape)]
    layers.append(Conv2D(filters, (3, 3), activation="relu"))
    layers.append(MaxPooling2D(2, 2))
    for _ in range(conv_layers - 1):
        if not drop_last_conv:
            layers.append(Conv2D(64, (3, 3), activation="relu"))
        layers.append(MaxPooling2D(2, 2))
    layers.append(Flatten())
    layers.append(Dense(128, activation="relu"))
    layers.append(Dense(10, activation="softmax"))
    model = Sequential(layers)
    # Compile: Adam with Keras' defaults (ε 1e-7, Keras' update), integer labels, accuracy.
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model
