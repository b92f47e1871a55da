"""The torch backend behind the front end: a lesson's LightningModule, trained by Lightning's Trainer.

Mirror of ``keras_ref/_model.py``.  What Keras does inside ``fit`` is done
here with Lightning's pieces: the Trainer runs the loop, a Lightning callback
carries the user's Keras-style callbacks, and the batches are sliced from
tensors already on the target device, reshuffled every epoch as Keras does.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import warnings
from collections import defaultdict
from pathlib import Path

import lightning as L
import numpy as np
import torch

from dual_backend.callbacks import EarlyStopping, ModelCheckpoint, TensorBoard
from dual_backend.errors import DualBackendError
from dual_backend.model import Model, order_logs

# Lightning announces the hardware on every Trainer; the front end prints its own lines.
logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
# Advice that does not apply: evaluation-free fits skip validation on purpose,
# and the batches are device tensors, not a DataLoader that workers could speed up.
warnings.filterwarnings("ignore", message=".*validation_step.*but have no `val_dataloader`.*")
warnings.filterwarnings("ignore", message=".*does not have many workers.*")
warnings.filterwarnings("ignore", message=".*isinstance\\(treespec, LeafSpec\\)` is deprecated.*")
# keras_basics' checkpoint sits beside the run's other files, as Keras' does.
warnings.filterwarnings("ignore", message=".*Checkpoint directory .* exists and is not empty.*")


def select_device(device: str) -> str:
    """``cpu``, ``gpu`` or ``auto`` (a GPU when torch sees one) → the device actually used."""
    if device == "gpu" and not torch.cuda.is_available():
        raise DualBackendError(
            "--device gpu was asked for, but torch sees no CUDA GPU. Use --device cpu or auto, "
            "or install a CUDA build of torch on a machine with an NVIDIA GPU."
        )
    if device == "auto":
        return "gpu" if torch.cuda.is_available() else "cpu"
    return device


def seed(value: int) -> None:
    L.seed_everything(value, workers=True, verbose=False)


def set_floatx(name: str) -> None:
    """torch's default dtype: the parameters, buffers and optimizer slots created after it."""
    torch.set_default_dtype(getattr(torch, name))


class TensorBatches:
    """Batches sliced from whole tensors, in a new random order every epoch.

    What a ``DataLoader`` over a ``TensorDataset`` yields, without indexing and
    collating one sample at a time: the data are already on the device.
    """

    def __init__(self, *tensors, batch_size: int, shuffle):
        self.tensors, self.batch_size, self.shuffle = tensors, batch_size, shuffle
        self.size, self.epoch = len(tensors[0]), 0

    def __len__(self):
        return -(-self.size // self.batch_size)

    def __iter__(self):
        device = self.tensors[0].device
        if isinstance(self.shuffle, list):  # the front end's permutations, one per epoch
            order = torch.as_tensor(self.shuffle[min(self.epoch, len(self.shuffle) - 1)], device=device)
            self.epoch += 1
        else:
            order = torch.randperm(self.size, device=device) if self.shuffle else None
        for start in range(0, self.size, self.batch_size):
            if order is None:
                yield tuple(t[start:start + self.batch_size] for t in self.tensors)
            else:
                index = order[start:start + self.batch_size]
                yield tuple(t[index] for t in self.tensors)


class LiveLogs(dict):
    """The running epoch means, read off the device only when a callback looks at them."""

    def __init__(self, means):
        super().__init__()
        self.means = means

    def _logs(self):
        return self.means.compute()

    def items(self):
        return self._logs().items()

    def __getitem__(self, key):
        return self._logs()[key]

    def get(self, key, default=None):
        return self._logs().get(key, default)


class KerasCallbacks(L.Callback):
    """Runs the front end's Keras-style callbacks from Lightning's hooks and records the History."""

    def __init__(self, callbacks, front: "TorchModel"):
        self.callbacks, self.front = callbacks, front
        self.wants_batches = callbacks.wants_batches
        self.history: dict[str, list[float]] = defaultdict(list)

    def on_train_start(self, trainer, module):
        self.callbacks.on_train_begin({})

    def on_train_epoch_start(self, trainer, module):
        self.callbacks.on_epoch_begin(trainer.current_epoch, {})

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        if self.wants_batches:
            self.callbacks.on_train_batch_end(batch_idx, LiveLogs(module.train_means))

    def on_train_epoch_end(self, trainer, module):
        # Lightning has already run this epoch's validation when this hook fires.
        logs = {**module.train_means.compute(), **module.val_means.compute("val_")}
        logs = order_logs(logs, self.front.log_keys)
        module.log_dict({k: v for k, v in logs.items() if not k.startswith("val_")})  # val_: by the module
        for key, value in logs.items():
            self.history[key].append(value)
        self.callbacks.on_epoch_end(trainer.current_epoch, logs)
        if self.front.stop_training:
            trainer.should_stop = True

    def on_train_end(self, trainer, module):
        self.callbacks.on_train_end({})


def lightning_counterparts(framework) -> tuple:
    """The front end's ``TensorBoard`` / ``ModelCheckpoint`` / ``EarlyStopping`` as Lightning's
    logger and callbacks, set to Keras' semantics."""
    from lightning.pytorch import callbacks as lightning_callbacks
    from lightning.pytorch.loggers import TensorBoardLogger

    logger, chosen = False, []
    for callback in framework:
        if isinstance(callback, TensorBoard):
            logger = TensorBoardLogger(save_dir=callback.log_dir, name="", version="")
        elif isinstance(callback, ModelCheckpoint):
            path = Path(callback.filepath)
            # Keras' save_best_only keeps one file, overwritten on each improvement.
            chosen.append(lightning_callbacks.ModelCheckpoint(
                dirpath=path.parent, filename=path.stem, monitor=callback.monitor if callback.save_best_only else None,
                mode="min", save_top_k=1, enable_version_counter=False,
                auto_insert_metric_name=False))
        elif isinstance(callback, EarlyStopping):
            chosen.append(lightning_callbacks.EarlyStopping(
                monitor=callback.monitor, mode="min", patience=callback.patience, min_delta=callback.min_delta))
        else:
            raise DualBackendError(f"No Lightning counterpart for {type(callback).__name__}.")
    return logger, chosen


@contextlib.contextmanager
def intra_op_threads(count: int | None):
    """Run with ``count`` intra-op threads (``None``: torch's default), then restore."""
    before = torch.get_num_threads()
    if count:
        torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


class TorchModel(Model):
    backend = "torch"

    def __init__(self, module, lesson, variant, options, device):
        super().__init__(lesson, variant, options, select_device(device))
        self.module = module
        self.torch_device = torch.device("cuda" if self.device == "gpu" else "cpu")
        self.name = lesson or module.model_name
        self.input_shape, self.output_shape = module.input_shape, module.output_shape
        self.optimizer, self.loss, self.metrics = module.keras_optimizer, module.keras_loss, module.keras_metrics

    def _compile(self, optimizer, loss, metrics):
        self.module.compile(optimizer=optimizer, loss=loss, metrics=metrics)

    def _trainer(self, **settings) -> L.Trainer:
        settings = {"logger": False, "enable_checkpointing": False, **settings}
        return L.Trainer(
            accelerator=self.device, devices=1, enable_progress_bar=False, enable_model_summary=False,
            num_sanity_val_steps=0, **settings,
        )

    def _is_pipeline(self, x) -> bool:
        return isinstance(x, torch.utils.data.DataLoader)

    def _tensors(self, *arrays):
        return [torch.from_numpy(np.ascontiguousarray(a)).to(self.torch_device) for a in arrays]

    def _inputs(self, x):
        """Keras' NHWC images as the NCHW tensor a convolutional module computes on."""
        (x,) = self._tensors(x)
        return x.permute(0, 3, 1, 2) if self.module.channels_first and x.dim() == 4 else x

    def _batches(self, x, y=None, batch_size=32, shuffle=False):
        tensors = [self._inputs(x)] + ([] if y is None else self._tensors(y))
        return TensorBatches(*tensors, batch_size=batch_size, shuffle=shuffle)

    @property
    def threads(self) -> int | None:
        """One intra-op thread for models without convolutions on the CPU.

        A Dense step at batch 32 is too small to split: on 2 cores one thread
        took 0.73-0.86 ms/step and two 0.79-0.95 ms; and when anything else
        wants a core, torch's OpenMP threads wait on each other at every op
        (3 ms/step with one thread, 11-54 ms with two, measured here).
        """
        return 1 if self.device == "cpu" and not self.module.channels_first else None

    def _fit(self, *args):
        with intra_op_threads(self.threads):
            return self._fit_here(*args)

    def _fit_here(self, x, y, epochs, batch_size, validation_data, callbacks, shuffle, steps_per_epoch, framework):
        adapter = KerasCallbacks(callbacks, self)
        logger, lightning_callbacks = lightning_counterparts(framework)
        trainer = self._trainer(max_epochs=epochs, callbacks=[adapter, *lightning_callbacks], logger=logger,
                                log_every_n_steps=1,  # only epoch logs are written; silences a warning
                                enable_checkpointing=any(isinstance(c, ModelCheckpoint) for c in framework),
                                limit_train_batches=steps_per_epoch or 1.0,
                                limit_val_batches=1.0 if validation_data is not None else 0)
        train = x if self._is_pipeline(x) else self._batches(x, y, batch_size, shuffle)
        val = validation_data
        if validation_data is not None and not self._is_pipeline(validation_data):
            val = self._batches(*validation_data, batch_size=batch_size)
        self.module.val_means.reset()
        trainer.fit(self.module, train_dataloaders=train, val_dataloaders=val)
        return dict(adapter.history)

    def _evaluate(self, x, y, batch_size):
        batches = x if self._is_pipeline(x) else self._batches(x, y, batch_size)
        with intra_op_threads(self.threads):
            self._trainer().validate(self.module, batches, verbose=False)
        return self.module.val_means.compute()

    def _predict(self, x, batch_size):
        with intra_op_threads(self.threads):
            batches = self._trainer().predict(self.module, self._batches(x, batch_size=batch_size))
        return torch.cat(batches).cpu().numpy()

    def _get_weights(self):
        return self.module.get_weights()

    def _set_weights(self, weights):
        self.module.set_weights(weights)

    def _layer_outputs(self, x):
        self.module.to(self.torch_device).eval()
        with torch.no_grad():
            return [output.cpu().numpy() for output in self.module.layer_outputs(self._inputs(x))]

    def layer_rows(self):
        module = self.module
        return [
            (name, layer.keras_type, shape, sum(t.numel() for t in (*layer.parameters(), *layer.buffers())))
            for name, layer, shape in zip(module.layer_names, module.body, module.output_shapes)
        ]

    def trainable_params(self) -> int:
        return sum(p.numel() for p in self.module.parameters() if p.requires_grad)

    def save(self, path) -> None:
        """A ``.pt`` file of tensors and plain values, loadable with ``weights_only=True``."""
        path = Path(path)
        if path.suffix != ".pt":
            raise DualBackendError(f"torch models are saved as .pt files, got {path}.")
        checkpoint = {
            "format": "dual-backend/torch/1", "lesson": self.lesson, "variant": self.variant,
            "options": self.options, "optimizer": self.optimizer if isinstance(self.optimizer, str) else None,
            "loss": self.loss, "metrics": self.metrics,
            "state_dict": {k: v.cpu() for k, v in self.module.state_dict().items()},
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
        os.close(handle)
        try:
            torch.save(checkpoint, temporary)
            os.replace(temporary, path)
        finally:
            Path(temporary).unlink(missing_ok=True)


def build(program, recipe, options, device) -> TorchModel:
    module = program.build_model(input_shape=recipe.lesson.input_shape, **options)
    return TorchModel(module, recipe.lesson.name, recipe.variant_name, options, device)


def load(path, device) -> TorchModel:
    import dual_backend

    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - any unreadable file gets the same advice
        raise DualBackendError(f"{path} is not a readable dual-backend torch checkpoint ({error}).") from None
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != "dual-backend/torch/1":
        raise DualBackendError(f"{path} is not a dual-backend torch checkpoint (no 'format' entry).")
    model = dual_backend.build(checkpoint["lesson"], backend="torch", variant=checkpoint["variant"],
                               device=device, **checkpoint["options"])
    model.module.load_state_dict(checkpoint["state_dict"])
    model.compile(optimizer=checkpoint["optimizer"] or "rmsprop", loss=checkpoint["loss"],
                  metrics=checkpoint["metrics"])
    return model
