"""What makes a torch model behave as Keras: Keras' layers, optimizers, losses and ``Sequential``.

A port reads like its Keras twin because the pieces have Keras' names and,
more importantly, Keras' behaviour rather than PyTorch's defaults (README,
"Keras and torch: where they differ")::

    from torch_impl.keras import Dense, Flatten, Input, Sequential

What only makes it faster lives in ``torch_impl.fast``; what the process
needs around training (threads, denormals, memory) in ``torch_impl.process``.
"""

from torch_impl.keras.layers import (Activation, AlphaDropout, AveragePooling2D, BatchNormalization, Conv2D, Dense,
                                     Dropout, Flatten, GlobalAveragePooling2D, Input, Layer, MaxPooling2D, Rescaling,
                                     Reshape)
from torch_impl.keras.losses import EpochMeans, correct_predictions, keras_loss
from torch_impl.keras.optimizers import KerasAdam, KerasOptimizer, KerasRMSprop, KerasSGD, RMSprop, make_optimizer
from torch_impl.keras.sequential import Sequential

__all__ = ["Activation", "AlphaDropout", "AveragePooling2D", "BatchNormalization", "Conv2D", "Dense", "Dropout",
           "EpochMeans", "Flatten", "GlobalAveragePooling2D", "Input", "KerasAdam", "KerasOptimizer", "KerasRMSprop",
           "KerasSGD", "Layer", "MaxPooling2D", "RMSprop", "Rescaling", "Reshape", "Sequential", "correct_predictions",
           "keras_loss", "make_optimizer"]
