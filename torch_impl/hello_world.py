"""Hello world: one neuron learns y = 3x + 1 (course note 003), ported to PyTorch Lightning.

The smallest network there is: a single Dense unit, two parameters, fitted
by stochastic gradient descent to six points of the line y = 3x + 1.  After
500 epochs it predicts very close to 31 for x = 10, but not exactly 31:
it learned from six points, not the formula.
"""

from torch_impl.keras import Dense, Input, Sequential


def build_model(input_shape=(1,)):
    # Build the model: one layer, one neuron.
    model = Sequential([
        Input(shape=input_shape),
        Dense(units=1),
    ])
    # Compile: plain SGD (Keras' lr 0.01) on the mean squared error, as the course does.
    model.compile(optimizer="sgd", loss="mean_squared_error")
    return model
