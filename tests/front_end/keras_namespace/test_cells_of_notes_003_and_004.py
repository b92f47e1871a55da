"""Course notes 003 (horse-or-human) and 004 (the 20-layer nets): their cells run on both backends.

The cells' text is the notes' (../shared/seeds/003_*.txt, 004_*.txt) with the imports changed to the
project's; each test says what else differs and why.
"""

import numpy as np
import pytest

import dual_backend
from dual_backend import parity
from dual_backend.images import load_images
from tests.front_end.keras_namespace.support import BACKENDS

# Note 003's horse-or-human cells, in order: the model, summary, compile, the generator, the training.
# Besides the imports (`tenserflow` → the project's), the note's typos are corrected so that the cells run at all:
# `ImagesDataGenerator` → `ImageDataGenerator`, the generator's commented-out first line restored,
# `step_per_epoch` → `steps_per_epoch`; and `model.fit_generator` → `model.fit`, since Keras 3 (tf.keras 2.21)
# has no `fit_generator` (AttributeError) and `fit` takes the generator.  Ours: the folder
# (HORSE_OR_HUMAN, the data set's training folder, instead of '/tmp/horse-or-human/'), batch_size=16
# instead of 128, 2 steps per epoch instead of 8, 2 epochs instead of 15.
HORSE_OR_HUMAN_CELLS = """from dual_backend import tf
model = tf.keras.models.Sequential([
	# Note the input shape is the desired size of the image 300x300 with 3 bytes color

    # This is the first convolution
    tf.keras.layers.Conv2D(16,(3,3),activation='relu',input_shape=(300,300,3)),
    tf.keras.layers.MaxPooling2D(2,2),
    # The second convolution layer
    tf.keras.layers.Conv2D(32,(3,3),activation='relu'),
    tf.keras.layers.MaxPooling2D(2,2),
    # The third convolution layer
    tf.keras.layers.Conv2D(64,(3,3),activation='relu'),
    tf.keras.layers.MaxPooling2D(2,2),
    tf.keras.layers.Conv2D(64,(3,3),activation='relu'),
    tf.keras.layers.MaxPooling2D(2,2),
    # Flatten the results to feed into a DNN
    tf.keras.layers.Flatten(),
    # 512 neuron hidden layer
    tf.keras.layers.Dense(512,activation='relu'),
    # Only 1 out neuron. It will contain a value from 0-1 where 0 for class('horses') and 1 for the other ('humans')
    tf.keras.layers.Dense(1,activation='sigmoid')
])
model.summary()
from dual_backend.keras.optimizers import RMSprop

model.compile(loss='binary_crossentropy',optimizer=RMSprop(lr=0.001),metrics=['acc'])
from dual_backend.keras.preprocessing.image import ImageDataGenerator

# All images will be rescaled by 1./255
train_datagen = ImageDataGenerator(rescale=1/255)

train_generator = train_datagen.flow_from_directory(
	HORSE_OR_HUMAN,    # This is the source directory for training images
	target_size = (300,300),   # All images will be resized to 300x300
	batch_size = 16,
	# sice we use binary_crossentropy loss,we need binary labels
	class_mode = 'binary')
history = model.fit(
		train_generator,
		steps_per_epoch=2,
		epochs=2,
		verbose=1)
"""


def run_cells(text: str, backend: str, seed: int = 0, **scope) -> dict:
    dual_backend.set_backend(backend)
    dual_backend.backend_package(backend).seed(seed)
    exec(text, scope)
    return scope


def test_the_notes_horse_or_human_cells_train_on_both_backends_and_agree_after_a_weight_transfer():
    """The model, RMSprop(lr=...) (taken with an OldSpellingWarning), the folder flow read on across epochs.

    Four steps of 16 images do not lower the loss reliably (RMSprop's first steps overshoot; on some
    seeds the second epoch's loss is above the first's), and training to an accuracy range costs
    minutes on two CPU cores: so the cells are held to running with Keras' History on both backends,
    and the two trained models to giving the same outputs and the same decisions on 32 validation images
    once the keras model's weights are copied to the torch one."""
    train_dir, validation_dir = dual_backend.data.horse_or_human_dirs()
    with pytest.warns(dual_backend.keras.optimizers.OldSpellingWarning, match="learning_rate"):
        scopes = [run_cells(HORSE_OR_HUMAN_CELLS, backend, HORSE_OR_HUMAN=str(train_dir)) for backend in BACKENDS]
    for scope in scopes:
        losses = scope["history"].history["loss"]
        assert list(scope["history"].history) == ["loss", "acc"] and len(losses) == 2 and np.all(np.isfinite(losses))
    keras_model, torch_model = (scope["model"] for scope in scopes)
    assert keras_model.count_params() == torch_model.count_params() == 8_450_145
    parity.copy_weights(keras_model, torch_model)
    files = sorted(validation_dir.glob("*/*.png"))[::8]
    images = load_images(files, (300, 300))
    keras_outputs, torch_outputs = (model.predict(images, verbose=0) for model in (keras_model, torch_model))
    assert np.abs(keras_outputs - torch_outputs).max() <= 1e-5
    np.testing.assert_array_equal(keras_outputs > 0.5, torch_outputs > 0.5)


# Note 004's deep nets, each cell as written after `from dual_backend import keras`, trained as the note's
# workflow cells train them (its data, StandardScaler and compile cell; the fit without the callbacks).
# Ours: the slicing line and the epochs (below).  The note's complete-code cell, the same net with
# Dense(100, 'selu'), imports pandas and matplotlib to plot its curves: not run here.
DEEP_DATA = """import numpy as np
from dual_backend import keras
fashion_mnist = keras.datasets.fashion_mnist
(x_train_all,y_train_all),(x_test,y_test) = fashion_mnist.load_data()
x_valid,x_train = x_train_all[:5000],x_train_all[5000:]
y_valid,y_train = y_train_all[:5000],y_train_all[5000:]
x_valid, y_valid, x_train, y_train = x_valid[:1000], y_valid[:1000], x_train[:TRAIN], y_train[:TRAIN]
x_test, y_test = x_test[:2000], y_test[:2000]
from sklearn.preprocessing import StandardScaler
scaler = StandardScaler()
x_train_scaler = scaler.fit_transform(
    x_train.astype(np.float32).reshape(-1,1)).reshape(-1,28,28)
x_valid_scaler = scaler.transform(
    x_valid.astype(np.float32).reshape(-1,1)).reshape(-1,28,28)
x_test_scaler = scaler.transform(
    x_test.astype(np.float32).reshape(-1,1)).reshape(-1,28,28)
"""
DEEP_FIT = """model.compile(loss='sparse_categorical_crossentropy',
             optimizer='sgd',
             metrics=['accuracy'])
history = model.fit(x_train_scaler, y_train, epochs=EPOCHS,
                   validation_data=(x_valid_scaler,y_valid))
result = model.evaluate(x_test_scaler,y_test)
"""
DEEP_CELLS = {
    "relu": """model = keras.models.Sequential()
model.add(keras.layers.Flatten(input_shape=[28,28]))
for _ in range(20):
    model.add(keras.layers.Dense(10,activation='relu'))
model.add(keras.layers.Dense(10,activation='softmax'))
""",
    "relu and BatchNormalization": """model = keras.models.Sequential()
model.add(keras.layers.Flatten(input_shape=[28,28]))
for _ in range(20):
    model.add(keras.layers.Dense(10,activation='relu'))
    model.add(keras.layers.BatchNormalization())
model.add(keras.layers.Dense(10,activation='softmax'))
""",
    "selu": """model = keras.models.Sequential()
model.add(keras.layers.Flatten(input_shape=[28,28]))
for _ in range(20):
    model.add(keras.layers.Dense(10,activation='selu'))
model.add(keras.layers.Dense(10,activation='softmax'))
""",
    "selu and AlphaDropout": """model = keras.models.Sequential()
model.add(keras.layers.Flatten(input_shape=[28,28]))
for _ in range(20):
    model.add(keras.layers.Dense(10,activation='selu'))
model.add(keras.layers.AlphaDropout(rate=0.5))# 只在最后一层添加了dropout
# AlphaDropout: 1. 均值和方差不变 2. 归一化性质也不变
# model.add(keras.layers.Dropout(rate=0.5))
model.add(keras.layers.Dense(10,activation='softmax'))
""",
}

# (training images, epochs, test accuracy range, outputs' bound after the transfer), measured on both backends.
# The relu net is the note's example of a deep net that barely trains (vanishing gradients): over 3 epochs of
# 10,000 images its loss stays within 0.03 of ln(10) and its accuracy at 0.0985-0.18 (seeds 0-2, both backends);
# held to that (loss within 0.05 of ln(10)), not to a range above chance, which an untrained model also meets.  BatchNormalization needs 3 epochs of 10,000 to leave chance:
# 0.33-0.36.  selu: one epoch of 5,000, 0.39-0.52; with AlphaDropout 0.28-0.37.
DEEP_TRAINING = {
    "relu": (10_000, 3, (0.05, 0.25), 1e-5),
    "relu and BatchNormalization": (10_000, 3, (0.22, 0.50), 1e-4),
    "selu": (5_000, 1, (0.25, 0.70), 1e-5),
    "selu and AlphaDropout": (5_000, 1, (0.18, 0.55), 1e-5),
}


@pytest.mark.parametrize("cell", DEEP_CELLS)
def test_the_notes_20_layer_cells_train_on_both_backends_and_agree_after_a_weight_transfer(cell):
    """Twenty Dense layers (relu, relu with BatchNormalization after each, selu, selu with AlphaDropout
    before the head) built by the note's `for _ in range(20)` loop on `Sequential().add`, trained with
    'sgd': test accuracy in the measured range on each backend; then the keras model's weights (moving
    statistics included) copied to the torch model give the same outputs and decisions on the 2,000 test
    images (AlphaDropout is the identity outside training)."""
    train, epochs, (low, high), bound = DEEP_TRAINING[cell]
    text = (DEEP_DATA.replace("TRAIN", str(train)) + DEEP_CELLS[cell]
            + DEEP_FIT.replace("EPOCHS", str(epochs)))
    scopes = [run_cells(text, backend) for backend in BACKENDS]
    for backend, scope in zip(BACKENDS, scopes):
        assert low <= scope["result"][1] <= high, (backend, scope["result"])
    if cell == "relu":
        for scope in scopes:
            assert scope["history"].history["loss"][-1] == pytest.approx(np.log(10), abs=0.05)
    keras_model, torch_model = (scope["model"] for scope in scopes)
    parity.copy_weights(keras_model, torch_model)
    x_test = scopes[0]["x_test_scaler"]
    keras_outputs, torch_outputs = (model.predict(x_test, verbose=0) for model in (keras_model, torch_model))
    assert np.abs(keras_outputs - torch_outputs).max() <= bound
    assert np.mean(keras_outputs.argmax(axis=1) == torch_outputs.argmax(axis=1)) >= 0.999
