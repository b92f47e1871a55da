"""``keras.Sequential`` as a LightningModule: Keras' layers and compile, Lightning's loop.

``Sequential([Input(shape), ...])`` builds every layer for the shape before
it, as Keras does; ``compile`` takes Keras' optimizer, loss and metric strings.
The Trainer owns the loop: ``forward``, ``training_step``,
``validation_step`` and ``configure_optimizers`` are Lightning's hooks.
"""

from __future__ import annotations

import inspect
import re

import lightning as L
import torch

from dual_backend import validation
from torch_impl.fast import chunks, cuda_graph, pool_first
from torch_impl.keras.layers import (PROBABILITY_HEADS, Activation, AlphaDropout, Conv2D, Dense, Dropout, Flatten,
                                     GlobalAveragePooling2D, Input, Pooling2D, Rescaling, Reshape, keras_names)

# Layers that keep each value in its place: a Flatten of NCHW maps stays unread until a Dense after them.
IN_PLACE = (Dropout, AlphaDropout, Activation, Flatten, Rescaling)
from torch_impl.keras.losses import EpochMeans, correct_predictions, keras_loss
from torch_impl.keras.optimizers import make_optimizer

# Format 1 of the saved files (``torch_impl.backend``, ``dual-backend/torch/1``) and its Lightning
# checkpoints key a weight by the layer's index and torch's own module and weight names:
# ``body.1.linear.weight`` is format 2's ``dense.kernel`` when layer 1 is named ``dense``.
FORMAT_1_KEY = re.compile(r"body\.(\d+)\.(.+)")
FORMAT_1_WEIGHTS = {"linear.weight": "kernel", "linear.bias": "bias", "conv.weight": "kernel", "conv.bias": "bias"}


class Sequential(L.LightningModule):
    """``keras.Sequential`` as a LightningModule: Keras' layers and compile, Lightning's loop.

    Each layer is a submodule named as Keras names it (``layer_names``: ``dense``, ``dense_1``,
    ``conv2d``, ...), so ``named_parameters()`` and ``state_dict()`` have Keras' variable paths:
    ``dense_1.kernel``, ``batch_normalization.moving_mean``, in torch's layout (a Dense kernel
    (units, inputs), a Conv2D kernel OIHW; ``get_weights`` gives Keras' layout).  ``body`` is the
    same layers as a list, in order.
    """

    def __init__(self, layers, name: str = "sequential", layer_names: list[str] | None = None):
        super().__init__()
        first, *rest = layers
        if not isinstance(first, Input):
            raise validation.DualBackendError("A Sequential model starts with Input(shape=...).")
        # Images go in as NCHW; Keras' (height, width, channels) shapes stay the public ones.
        self.channels_first = any(isinstance(layer, (Conv2D, Pooling2D, GlobalAveragePooling2D)) for layer in rest)
        shape, self.output_shapes = first.shape, []
        # A Flatten of NCHW maps gives the values in (channels, height, width) order: the Dense that reads
        # them takes its weights in Keras' order (``Dense.flattened_from``); with no Dense after it, the
        # Flatten itself puts them in Keras' (height, width, channels) order.
        flatten, flattened_from = None, None
        for layer in rest:
            if isinstance(layer, Flatten) and self.channels_first and len(shape) == 3:
                flatten, flattened_from = layer, shape
            elif isinstance(layer, Dense) and flattened_from:
                layer.flattened_from, flatten, flattened_from = flattened_from, None, None
            elif not isinstance(layer, IN_PLACE):
                flatten, flattened_from = None, None
            if isinstance(layer, Reshape):
                layer.channels_first = self.channels_first
            shape = layer.build(shape)
            self.output_shapes.append((None, *shape))
        if flatten is not None:
            flatten.keras_order = True
        # Convolution maps as the model's output: back in Keras' NHWC, for the loss and for predict.
        self.images_out = self.channels_first and len(shape) == 3
        self.body = list(rest)  # the layers in order; registered under their names below
        self.memory_format = torch.contiguous_format  # see use_channels_last
        self.step_logits = self.logits  # see compile_steps
        self.layer_names = layer_names or keras_names(rest)
        self.model_name = name
        self.input_shape, self.output_shape = (None, *first.shape), (None, *shape)
        self.keras_optimizer = self.keras_loss = self.kept_optimizer = None
        self.keras_from_logits = False
        self.keras_metrics: list[str] = []
        self.train_means = self.val_means = None  # see compile
        self.automatic_optimization = False  # see training_step
        self.step_graph: cuda_graph.StepGraph | None = None  # see training_step
        # Last, so that a layer name is checked against every attribute the module has.
        for layer_name, layer in zip(self.layer_names, rest, strict=True):
            self._register_layer(layer_name, layer)

    def _register_layer(self, layer_name: str, layer) -> None:
        """``layer`` as the submodule ``layer_name``: its weights are ``layer_name.kernel``, ...,
        as Keras' variable paths have them (``sequential/dense_1/kernel``)."""
        if layer_name in self._modules:
            raise validation.DualBackendError(
                "All layers added to a Sequential model should have unique names. Name "
                f"{layer_name!r} is already the name of a layer in this model. Update the `name` argument "
                "to pass a unique name.")
        # torch's add_module refuses any name the module has as an attribute.  A method's name (a layer
        # named 'hidden' or 'logits') does no harm: attribute lookup finds the method first and nothing
        # assigns to it, so such a layer goes into _modules directly.  A value the module or Lightning
        # assigns ('training', 'trainer') would then be refused by nn.Module.__setattr__.
        absent = object()
        own = inspect.getattr_static(self, layer_name, absent)
        if not layer_name or "." in layer_name or not (own is absent or inspect.isfunction(own)):
            why = ("torch joins a layer's name and its weights' names with '.'" if "." in layer_name else
                   "an empty name cannot prefix its weights' names" if not layer_name else
                   f"the LightningModule keeps a value of its own under {layer_name!r}")
            raise validation.DualBackendError(
                f"Layer name {layer_name!r} cannot name a layer on the torch backend: {why}. "
                "Give the layer another name (name=...).")
        self._modules[layer_name] = layer

    # Keras' compile, deliberately shadowing nn.Module.compile (torch.compile(model) still works).
    def compile(self, optimizer="rmsprop", loss=None, metrics=None, from_logits: bool = False):
        self.keras_optimizer = optimizer if not isinstance(optimizer, str) else validation.optimizer_name(optimizer)
        self.kept_optimizer = None  # made by the first fit (configure_optimizers)
        self.keras_loss = validation.loss_name(loss)
        self.keras_from_logits = from_logits  # Keras' from_logits=True: the outputs are logits
        self.keras_metrics = validation.metric_names(metrics)
        self.train_means = EpochMeans(self.keras_metrics)
        self.val_means = EpochMeans(self.keras_metrics)

    def forward(self, x):
        return self.in_keras_layout(self.body[-1](self.hidden(x)))

    def in_keras_layout(self, output):
        return output.permute(0, 2, 3, 1) if self.images_out else output

    def training_step(self, batch, batch_idx):
        """One Keras step per batch: a batch, or each batch of a chunk (``TensorBatches``).

        Optimization is manual (``automatic_optimization = False``) so that one
        Lightning batch can carry several steps (``torch_impl.fast.chunks``).  A
        single batch takes Lightning's own zero_grad / ``manual_backward`` /
        ``step`` (what DDP and callbacks need).
        """
        optimizer = self.optimizers()
        if isinstance(batch, chunks.StepChunk):
            chunks.train_chunk(self, optimizer, batch)
            return
        loss = self._step(batch, self.train_means)
        optimizer.zero_grad()
        self.manual_backward(loss)
        optimizer.step()

    def validation_step(self, batch, batch_idx):
        self._step(batch, self.val_means)

    def predict_step(self, batch, batch_idx):
        return self(self.from_batch_layout(batch[0]))

    # A user's own Trainer and DataLoader (``TorchModel.to_lightning``) bring images in Keras' NHWC layout;
    # the front end's batches are already NCHW, and it turns this off while it trains.
    keras_layout_batches = False

    def from_batch_layout(self, x):
        if self.keras_layout_batches and self.channels_first and x.dim() == 4:
            return self.in_memory_format(x.permute(0, 3, 1, 2))
        return x

    def configure_optimizers(self):
        """The optimizer ``compile`` chose, made once: like Keras', its state (step count, moments) carries
        on from one ``fit`` to the next until the model is compiled again."""
        if self.kept_optimizer is None:
            self.kept_optimizer = make_optimizer(self.keras_optimizer, self.parameters()) \
                if isinstance(self.keras_optimizer, str) else self.keras_optimizer(self.parameters())
        return self.kept_optimizer

    def trained_keras_tensors(self) -> list[tuple]:
        """``(layer, index, tensor)`` for each weight the optimizer updates, in Keras' order
        (``model.trainable_weights``); ``layer.to_keras(index, ...)`` gives an array in Keras' layout."""
        return [(layer, index, tensor) for layer in self.body
                for index, tensor in enumerate(layer.keras_tensors()) if tensor.requires_grad]

    def _step(self, batch, means: EpochMeans):
        x, y, *sample_weight = batch  # (x, y) or (x, y, sample_weight)
        logits = self.step_logits(self.from_batch_layout(x))
        loss = keras_loss(self.keras_loss, logits, y, self.loss_activation, *sample_weight)
        correct = correct_predictions(logits, y, self.head_activation) if self.keras_metrics else None
        means.update(loss, correct, len(x))
        return loss

    @property
    def head_activation(self) -> str | None:
        """The last layer's activation: it decides how Keras computes the loss and the accuracy."""
        return getattr(self.body[-1], "activation", None)

    @property
    def loss_activation(self) -> str | None:
        """The head the loss reads logits in front of: the last layer's activation, or, compiled with
        ``from_logits=True`` on a head without one, the softmax or sigmoid Keras then applies inside
        the loss (to the outputs, which ``logits`` returns as they are)."""
        if self.keras_from_logits:
            return "sigmoid" if self.keras_loss == "binary_crossentropy" else "softmax"
        return self.head_activation

    def logits(self, x):
        """The output before a softmax or sigmoid head: what Keras computes the loss from."""
        head = self.body[-1]
        if self.head_activation in PROBABILITY_HEADS:
            return self.in_keras_layout(head.logits(self.hidden(x)))
        return self.in_keras_layout(head(self.hidden(x)))

    def hidden(self, x):
        """Every layer but the last (a convolution's ReLU after its pooling: ``torch_impl.fast.pool_first``)."""
        return pool_first.hidden_layers(self.body[:-1], self.in_memory_format(x))

    def on_train_start(self):
        self.step_graph = None  # a graph per fit: its buffers are this fit's optimizer state

    def on_train_end(self):
        self.step_graph = None  # frees the graph's memory pool

    def on_train_epoch_start(self):
        self.train_means.reset()

    def on_validation_epoch_start(self):
        self.val_means.reset()

    def on_validation_epoch_end(self):
        # Logged for Lightning's loggers (TensorBoard).
        if self.trainer.training or self.trainer.state.fn == "fit":
            self.log_dict(self.val_means.compute("val_"))

    def on_load_checkpoint(self, checkpoint):
        # A Lightning checkpoint (a backup, a ModelCheckpoint file) may hold format 1's keys.
        checkpoint["state_dict"] = self.keras_named(checkpoint["state_dict"])

    def keras_named(self, state_dict: dict) -> dict:
        """``state_dict`` with format 1's keys (``body.1.linear.weight``) under this model's Keras
        names (``dense.kernel``), in the same order; keys already so named stay as they are."""
        renamed = {}
        for key, tensor in state_dict.items():
            found = FORMAT_1_KEY.fullmatch(key)
            if found and int(found[1]) < len(self.layer_names):
                weight = found[2]
                key = f"{self.layer_names[int(found[1])]}.{FORMAT_1_WEIGHTS.get(weight, weight)}"
            renamed[key] = tensor
        return renamed

    # Keras' surface beyond Lightning's hooks.

    def get_weights(self) -> list:
        """Keras' ``model.get_weights()``: every layer's arrays, in Keras' layout and order."""
        return [array for layer in self.body for array in layer.get_weights()]

    def set_weights(self, arrays) -> None:
        arrays = list(arrays)
        for layer in self.body:
            count = len(layer.keras_tensors())
            layer.set_weights(arrays[:count])
            arrays = arrays[count:]
        if arrays:
            raise validation.DualBackendError(f"{len(arrays)} weight arrays left over: not the same model.")

    def layer_outputs(self, x) -> list:
        """Every layer's output, images back in Keras' NHWC layout (for the activation figures), and
        flattened maps in Keras' (height, width, channels) order up to the Dense that reads them."""
        outputs, x, keras_order = [], self.in_memory_format(x), None
        for layer in self.body:
            if isinstance(layer, Flatten) and x.dim() == 4 and not layer.keras_order:
                channels, height, width = x.shape[1:]
                keras_order = torch.arange(x[0].numel(), device=x.device).reshape(channels, height, width) \
                    .permute(1, 2, 0).flatten()
            elif not isinstance(layer, IN_PLACE):
                keras_order = None
            x = layer(x)
            outputs.append(x.permute(0, 2, 3, 1) if x.dim() == 4 else x[:, keras_order] if keras_order is not None
                           else x)
        return outputs

    # Speed-ups that change the numbers computed: flags, off by default.

    def use_channels_last(self, enabled: bool = True) -> None:
        """Compute convolutions in channels-last memory (tensors still NCHW-shaped): oneDNN's fast
        layout on CPUs (docs/speed.md).  Its kernels sum in another order (outputs differ by
        ~1e-7), so it is a flag, off by default."""
        if self.channels_first:
            self.memory_format = torch.channels_last if enabled else torch.contiguous_format
            self.to(memory_format=self.memory_format)

    def compile_steps(self) -> None:
        """Train and evaluate through ``torch.compile`` (fused kernels; another rounding): a flag."""
        self.step_logits = torch.compile(self.logits)

    def in_memory_format(self, x):
        return x.contiguous(memory_format=self.memory_format) if self.channels_first and x.dim() == 4 else x

    def train_step_eagerly(self, batch, optimizer):
        """One training step, op by op: forward, loss and epoch sums, backward, update."""
        loss = self._step(batch, self.train_means)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        return loss.detach()  # holding the autograd graph past the step would keep its nodes alive
