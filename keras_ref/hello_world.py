"""Hello world: one neuron learns y = 3x + 1 (course note 003).

The smallest network there is: a single Dense unit, two parameters, fitted
by stochastic gradient descent to six points of the line y = 3x + 1.  After
500 epochs it predicts very close to 31 for x = 10, but not exactly 31:
it learned from six points, not the formula.
"""

import tensorflow as tf


def build_model(input_shape=(1,)):
    # Build the model: one layer, one neuron.
    model = tf.keras.Sequential([
        tf.keras.Input(shape=input_shape),
        tf.keras.layers.Dense(units=1),
    ])
    # Compile: plain SGD on the mean squared error, as the course does.
    model.compile(optimizer="sgd", loss="mean_squared_error")
    return model
