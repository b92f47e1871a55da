"""``keras.optimizers``: SGD, Adam and RMSprop as framework-free descriptions.

``compile(optimizer=keras.optimizers.Adam(learning_rate=1e-3))`` gives the
model the framework's optimizer with these settings and Keras' update rule:
``tf.keras.optimizers.Adam`` on keras, ``torch_impl.keras.KerasAdam`` on torch
(``Model._built_optimizer``).  The course's ``lr=`` is taken, with a warning
naming ``learning_rate`` (Keras 3 refuses ``lr``); any other argument at a
value other than Keras' default is refused, naming it.
"""

from __future__ import annotations

import warnings

from dual_backend.errors import DualBackendError

# Arguments of every Keras 3 optimizer that neither backend applies: taken at their defaults only.
NOT_APPLIED = {"weight_decay": None, "clipnorm": None, "clipvalue": None, "global_clipnorm": None,
               "use_ema": False, "ema_momentum": 0.99, "ema_overwrite_frequency": None, "loss_scale_factor": None,
               "gradient_accumulation_steps": None, "name": None}


class OldSpellingWarning(UserWarning):
    """An argument spelt as Keras 2 spelt it, taken with its Keras 3 meaning."""


class Optimizer:
    """An optimizer's Keras name and settings, built as each framework's own when the model compiles."""

    defaults: dict = {}
    refused: dict = {}  # Keras arguments taken only at their default value here

    def __init__(self, *args, **kwargs):
        kind = type(self).__name__
        if len(args) > len(self.defaults):
            raise DualBackendError(f"{kind} takes at most {len(self.defaults)} positional arguments, got {len(args)}.")
        for argument, value in zip(self.defaults, args):
            kwargs[argument] = value
        if "lr" in kwargs:
            if "learning_rate" in kwargs:
                raise DualBackendError(f"{kind} got both lr and learning_rate: give learning_rate only.")
            warnings.warn(f"{kind}(lr=...) is Keras 2's spelling, which Keras 3 refuses: write "
                          f"learning_rate={kwargs['lr']!r}. Taken as learning_rate on both backends.",
                          OldSpellingWarning, stacklevel=2)
            kwargs["learning_rate"] = kwargs.pop("lr")
        self.settings = dict(self.defaults)
        for argument, value in kwargs.items():
            if argument in self.defaults:
                self.settings[argument] = self._number(argument, value)
            elif argument in {**NOT_APPLIED, **self.refused}:
                default = {**NOT_APPLIED, **self.refused}[argument]
                if value != default and argument != "name":
                    raise DualBackendError(
                        f"{kind}({argument}={value!r}) is not supported by dual-backend on either backend. "
                        f"{kind} takes: {', '.join(self.defaults)}. Leave {argument} out.")
            else:
                raise DualBackendError(f"{kind} has no argument {argument!r} in Keras 3. "
                                       f"{kind} takes: {', '.join(self.defaults)}.")

    def _number(self, argument, value):
        if isinstance(self.defaults[argument], bool):
            if not isinstance(value, bool):
                raise DualBackendError(f"{type(self).__name__}({argument}=...) must be True or False, got {value!r}.")
            return value
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0 or \
                (argument == "learning_rate" and value == 0):
            raise DualBackendError(f"{type(self).__name__}({argument}=...) must be a "
                                   f"{'positive' if argument == 'learning_rate' else 'non-negative'} number, "
                                   f"got {value!r} (learning-rate schedules are not supported).")
        return float(value)

    @property
    def learning_rate(self) -> float:
        return self.settings["learning_rate"]

    def __repr__(self):
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self.settings.items())})"


class SGD(Optimizer):
    """Keras' SGD: ``m = momentum·m − lr·g``; ``p += m`` (nesterov: ``p += momentum·m − lr·g``)."""

    defaults = {"learning_rate": 0.01, "momentum": 0.0, "nesterov": False}


class Adam(Optimizer):
    """Keras' Adam: ``p −= lr·√(1−β2ᵗ)/(1−β1ᵗ) · m / (√v + ε)``."""

    defaults = {"learning_rate": 0.001, "beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-7}
    refused = {"amsgrad": False}


class RMSprop(Optimizer):
    """Keras' RMSprop: ε inside the square root; with momentum ``m = momentum·m + lr·g/√(v + ε)``, ``p −= m``."""

    defaults = {"learning_rate": 0.001, "rho": 0.9, "momentum": 0.0, "epsilon": 1e-7}
    refused = {"centered": False}


def __getattr__(name: str):
    if name[:1].isupper():
        raise UnsupportedOptimizer(f"keras.optimizers.{name} is not supported by dual-backend on either backend. "
                                   "Supported optimizers: SGD, Adam, RMSprop.")
    raise AttributeError(f"module 'dual_backend.keras.optimizers' has no attribute {name!r}")


class UnsupportedOptimizer(DualBackendError, AttributeError):
    """A Keras optimizer dual-backend does not build (an AttributeError too, so ``hasattr`` says no)."""
