"""The batches the keras backend hands to ``model.fit``: the front end's batch orders, and a pipeline's
batches checked as they stream.

Mirror of ``torch_impl/batches.py``.  Keras batches arrays itself; what it
lacks is taking given permutations (:class:`OrderedBatches`) and the front
end's checks on a ``tf.data`` pipeline (:class:`CheckedPipeline`).
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

import numpy as np

from dual_backend import validation
from dual_backend.errors import DualBackendError
from keras_ref import process

if TYPE_CHECKING:  # the backend imports this module
    from keras_ref.backend import KerasModel

with process.start_up_lines_hidden():
    import tensorflow as tf


class OrderedBatches(tf.keras.utils.PyDataset):
    """Batches in given permutations, one per epoch (the front end's ``batch_order_seed``).

    All epochs' batches in one sequence, read with ``steps_per_epoch``: Keras then keeps
    one iterator across epochs, so a batch's epoch is its index.  Counting epochs with
    ``on_epoch_end`` does not work: Keras calls it once before the first epoch (which
    trained epochs 0, 1, 2 on permutations 1, 2, 2), and tf.data may prefetch the next
    epoch's first batches before the current epoch's ``on_epoch_end``."""

    def __init__(self, x, y, batch_size, orders, steps, sample_weight=None):
        super().__init__()
        self.x, self.y, self.batch_size, self.orders, self.steps = x, y, batch_size, orders, steps
        self.sample_weight = sample_weight

    def __len__(self):
        return len(self.orders) * self.steps

    def __getitem__(self, index):
        epoch, batch = divmod(index, self.steps)
        chosen = self.orders[epoch][batch * self.batch_size:(batch + 1) * self.batch_size]
        if self.sample_weight is not None:
            return self.x[chosen], self.y[chosen], self.sample_weight[chosen]
        return self.x[chosen], self.y[chosen]


class CheckedPipeline:
    """A ``tf.data.Dataset`` whose batches get the front end's checks as they stream
    (``validation.check_batch``), in a ``tf.numpy_function`` before each batch is handed on.

    TensorFlow reports an exception raised there as an ``OpError`` from deep in
    the graph; ``raised`` keeps the front end's own error, which ``reraise``
    puts back in its place.  The batches themselves pass through unchanged.
    """

    def __init__(self, front: "KerasModel"):
        self.front, self.raised = front, None

    def __call__(self, dataset, pipeline: str = "the data pipeline"):
        front = self.front

        def check(index, *arrays):
            try:
                validation.check_batch(int(index), arrays, front.input_shape[1:], front.loss, front.output_shape,
                                       pipeline)
            except DualBackendError as error:
                self.raised = error
                raise
            return np.bool_(True)

        inputs = tf.nest.flatten(dataset.element_spec)[0]
        if not inputs.shape[1:].is_compatible_with(front.input_shape[1:]):
            # Keras refuses such a pipeline when it traces the model, before a batch flows: the first batch
            # is read here, so that its check names it as on torch.
            for index, batch in enumerate(dataset):
                check(index, *(np.asarray(t) for t in tf.nest.flatten(batch)))

        def checked(index, batch):
            tensors = tf.nest.flatten(batch)
            passed = tf.numpy_function(check, [index, *tensors], tf.bool, stateful=True)
            with tf.control_dependencies([passed]):
                return tf.nest.pack_sequence_as(batch, [tf.identity(t) for t in tensors])

        return dataset.enumerate().map(checked).prefetch(1)

    @contextlib.contextmanager
    def reraise(self):
        try:
            yield
        except tf.errors.OpError:
            if self.raised is not None:
                raise self.raised from None
            raise
