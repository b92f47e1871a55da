"""Horse or human? A CNN on real 300x300 colour images (course note 003, sections 5-6), ported to PyTorch Lightning.

1,027 computer-generated pictures of horses and people, in two folders whose
names are the labels (alphabetical: horses 0, humans 1).  Four
convolution+pooling blocks shrink 300x300 pictures to 16x16x64 features; one
sigmoid unit answers "human?".  With so few pictures the network learns the
training set almost perfectly and still mistakes new pictures: overfitting.

Setup: torchvision's ``ImageFolder`` reads the folders (the labels from the
folder names, as ``flow_from_directory`` does) and a ``DataLoader`` with
worker processes decodes the PNGs while the model trains, repeated as Keras'
``flow_from_directory`` and tf.data's ``repeat()`` are: epochs of 8 steps
read on through passes of 8 full batches and one of 3.
"""

import os

import torch
from torch.utils.data import DataLoader
from torchvision import datasets, transforms

from dual_backend.images import check_image_folder
from torch_impl.batches import Repeat
from torch_impl.keras import Conv2D, Dense, Flatten, Input, MaxPooling2D, RMSprop, Sequential

IMAGE_SIZE = (300, 300)
CLASSES = 2  # horses, humans: one sigmoid unit
# Half the cores decode PNGs, the rest train: decoding a batch takes a fraction of a
# step, and workers that take every core stall the training threads at each op.
WORKERS = min(4, max(1, (os.cpu_count() or 2) // 2))


def binary_label(index):
    """Keras' class_mode='binary': the class index as a float, shaped like the sigmoid output."""
    return torch.tensor([index], dtype=torch.float32)


def to_rgb(image):
    return image.convert("RGB")


def _image_folder(directory):
    check_image_folder(directory, CLASSES)  # the same scan on both backends: see dual_backend/images.py
    # RGBA PNGs → RGB, 300x300, scaled to [0, 1] (ToTensor divides by 255) in torch's CHW layout.
    transform = transforms.Compose([
        transforms.Lambda(to_rgb),
        transforms.Resize(IMAGE_SIZE),
        transforms.ToTensor(),
    ])
    return datasets.ImageFolder(directory, transform=transform, target_transform=binary_label)


def training_data(directory, batch_size=128, seed=None):
    # Prepare the data: a new shuffle every pass; pin_memory: page-locked batches for a GPU.
    generator = torch.Generator().manual_seed(seed) if seed is not None else None
    loader = DataLoader(_image_folder(directory), batch_size=batch_size, shuffle=True, generator=generator,
                        num_workers=WORKERS, persistent_workers=WORKERS > 0, pin_memory=torch.cuda.is_available())
    # Repeat: steps_per_epoch=8 batches of 128 then run over the 1,027 pictures without running dry.
    return Repeat(loader)


def validation_data(directory, batch_size=128):
    return DataLoader(_image_folder(directory), batch_size=batch_size, shuffle=False, num_workers=WORKERS,
                      pin_memory=torch.cuda.is_available())


def build_model(input_shape=(300, 300, 3)):
    # Build the model: four convolution+pooling blocks, then a dense layer and one sigmoid unit.
    model = Sequential([
        Input(shape=input_shape),
        Conv2D(16, (3, 3), activation="relu"),
        MaxPooling2D(2, 2),
        Conv2D(32, (3, 3), activation="relu"),
        MaxPooling2D(2, 2),
        Conv2D(64, (3, 3), activation="relu"),
        MaxPooling2D(2, 2),
        Conv2D(64, (3, 3), activation="relu"),
        MaxPooling2D(2, 2),
        Flatten(),
        Dense(512, activation="relu"),
        Dense(1, activation="sigmoid"),
    ])
    # Compile: RMSprop at 0.001 (Keras' rule: ε inside the root), binary cross-entropy, metric 'acc'.
    model.compile(loss="binary_crossentropy", optimizer=RMSprop(learning_rate=0.001), metrics=["acc"])
    return model
