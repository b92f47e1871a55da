"""The torch backend behind the front end: a lesson's LightningModule, trained by Lightning's Trainer.

Mirror of ``keras_ref/_model.py``.  What Keras does inside ``fit`` is done
here with Lightning's pieces: the Trainer runs the loop, a Lightning callback
carries the user's Keras-style callbacks, and the batches are sliced from
tensors already on the target device, reshuffled every epoch as Keras does.
"""

from __future__ import annotations

import logging
import os
import tempfile
import warnings
from collections import defaultdict
from pathlib import Path

import lightning as L
import numpy as np
import torch

from dual_backend.errors import DualBackendError
from dual_backend.model import Model, order_logs

# Lightning announces the hardware on every Trainer; the front end prints its own lines.
logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
# Advice that does not apply: evaluation-free fits skip validation on purpose,
# and the batches are device tensors, not a DataLoader that workers could speed up.
warnings.filterwarnings("ignore", message=".*validation_step.*but have no `val_dataloader`.*")
warnings.filterwarnings("ignore", message=".*does not have many workers.*")
warnings.filterwarnings("ignore", message=".*isinstance\\(treespec, LeafSpec\\)` is deprecated.*")


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


class TensorBatches:
    """Batches sliced from whole tensors, in a new random order every epoch.

    What a ``DataLoader`` over a ``TensorDataset`` yields, without indexing and
    collating one sample at a time: the data are already on the device.
    """

    def __init__(self, *tensors, batch_size: int, shuffle: bool):
        self.tensors, self.batch_size, self.shuffle = tensors, batch_size, shuffle
        self.size = len(tensors[0])

    def __len__(self):
        return -(-self.size // self.batch_size)

    def __iter__(self):
        order = torch.randperm(self.size, device=self.tensors[0].device) if self.shuffle else None
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
        module.log_dict(logs)  # for Lightning's own EarlyStopping / ModelCheckpoint
        for key, value in logs.items():
            self.history[key].append(value)
        self.callbacks.on_epoch_end(trainer.current_epoch, logs)
        if self.front.stop_training:
            trainer.should_stop = True

    def on_train_end(self, trainer, module):
        self.callbacks.on_train_end({})


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
        return L.Trainer(
            accelerator=self.device, devices=1, logger=False, enable_checkpointing=False,
            enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0, **settings,
        )

    def _tensors(self, *arrays):
        return [torch.from_numpy(np.ascontiguousarray(a)).to(self.torch_device) for a in arrays]

    def _fit(self, x, y, epochs, batch_size, validation_data, callbacks, shuffle):
        adapter = KerasCallbacks(callbacks, self)
        trainer = self._trainer(max_epochs=epochs, callbacks=[adapter],
                                limit_val_batches=1.0 if validation_data else 0)
        train = TensorBatches(*self._tensors(x, y), batch_size=batch_size, shuffle=shuffle)
        val = TensorBatches(*self._tensors(*validation_data), batch_size=batch_size, shuffle=False) \
            if validation_data else None
        self.module.val_means.reset()
        trainer.fit(self.module, train_dataloaders=train, val_dataloaders=val)
        return dict(adapter.history)

    def _evaluate(self, x, y, batch_size):
        self._trainer().validate(self.module, TensorBatches(*self._tensors(x, y), batch_size=batch_size,
                                                            shuffle=False), verbose=False)
        return self.module.val_means.compute()

    def _predict(self, x, batch_size):
        batches = self._trainer().predict(self.module, TensorBatches(*self._tensors(x), batch_size=batch_size,
                                                                     shuffle=False))
        return torch.cat(batches).cpu().numpy()

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
