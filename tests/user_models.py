"""Small models written by hand on each backend's layers, for tests of the front end beyond the lessons."""


def one_layer_models(units: int, activation: str, inputs: int = 4):
    """``Dense(units, activation)`` on ``inputs`` features, as a tf.keras model and as the front end's
    keras and torch models, the torch one given the keras weights: ``(tf.keras model, keras, torch)``."""
    import tensorflow as tf

    from keras_ref.backend import KerasModel
    from torch_impl import keras as compat
    from torch_impl.backend import TorchModel

    tf.keras.utils.set_random_seed(0)
    keras_model = tf.keras.Sequential([tf.keras.Input((inputs,)),
                                       tf.keras.layers.Dense(units, activation=activation)])
    module = compat.Sequential([compat.Input((inputs,)), compat.Dense(units, activation=activation)])
    keras, torch = KerasModel(keras_model, None, None, {}, "cpu"), TorchModel(module, None, None, {}, "cpu")
    torch.set_weights(keras.get_weights())
    return keras_model, keras, torch
