"""The tf.keras workflow end to end (course note 004), ported to PyTorch Lightning.

Fashion-MNIST again, with the whole workflow around the model: a validation
set held out from training (55,000 / 5,000 / 10,000), plain SGD, inputs
standardised with scikit-learn, the three everyday callbacks (TensorBoard,
keep-the-best checkpoint, early stopping) and, in the deep variants, what
makes 20 hidden layers trainable: BatchNormalization, selu, AlphaDropout.

The variants are options of one program: ``hidden_units`` (one Dense layer
per entry), their ``activation``, ``batch_norm`` after every hidden layer,
and ``alpha_dropout`` before the output layer.
"""

from torch_impl.keras import AlphaDropout, BatchNormalization, Dense, Flatten, Input, Sequential


def build_model(input_shape=(28, 28), hidden_units=(300, 100), activation="sigmoid", batch_norm=False,
                alpha_dropout=None):
    # Build the model, one layer per line of the note.
    layers = [Input(shape=input_shape)]
    layers.append(Flatten())
    for units in hidden_units:
        layers.append(Dense(units, activation=activation))
        if batch_norm:
            layers.append(BatchNormalization())
    if alpha_dropout:
        layers.append(AlphaDropout(rate=alpha_dropout))
    layers.append(Dense(10, activation="softmax"))
    model = Sequential(layers)
    # Compile: plain SGD (learning rate 0.01), integer labels, accuracy.
    model.compile(loss="sparse_categorical_crossentropy", optimizer="sgd", metrics=["accuracy"])
    return model
