"""The tf.keras workflow end to end (course note 004).

Fashion-MNIST again, with the whole workflow around the model: a validation
set held out from training (55,000 / 5,000 / 10,000), plain SGD, inputs
standardised with scikit-learn, the three everyday callbacks (TensorBoard,
keep-the-best checkpoint, early stopping) and, in the deep variants, what
makes 20 hidden layers trainable: BatchNormalization, selu, AlphaDropout.

The variants are options of one program: ``hidden_units`` (one Dense layer
per entry), their ``activation``, ``batch_norm`` after every hidden layer,
and ``alpha_dropout`` before the output layer.
"""

import tensorflow as tf


def build_model(input_shape=(28, 28), hidden_units=(300, 100), activation="sigmoid", batch_norm=False,
                alpha_dropout=None):
    # Build the model, one layer per line of the note.
    layers = [tf.keras.Input(shape=input_shape)]
    layers.append(tf.keras.layers.Flatten())
    for units in hidden_units:
        layers.append(tf.keras.layers.Dense(units, activation=activation))
        if batch_norm:
            layers.append(tf.keras.layers.BatchNormalization())
    if alpha_dropout:
        layers.append(tf.keras.layers.AlphaDropout(rate=alpha_dropout))
    layers.append(tf.keras.layers.Dense(10, activation="softmax"))
    model = tf.keras.Sequential(layers)
    # Compile: plain SGD (learning rate 0.01), integer labels, accuracy.
    model.compile(loss="sparse_categorical_crossentropy", optimizer="sgd", metrics=["accuracy"])
    return model
