"""Horse or human? A CNN on real 300x300 colour images (course note 003, sections 5-6).

1,027 computer-generated pictures of horses and people, in two folders whose
names are the labels (alphabetical: horses 0, humans 1).  Four
convolution+pooling blocks shrink 300x300 pictures to 16x16x64 features; one
sigmoid unit answers "human?".  With so few pictures the network learns the
training set almost perfectly and still mistakes new pictures: overfitting.

Setup: the course reads the folders with ``ImageDataGenerator(rescale=1/255)
.flow_from_directory(...)``; Keras 3's equivalent is
``image_dataset_from_directory`` followed by a ``Rescaling`` layer.
"""

import tensorflow as tf

from dual_backend.images import check_image_folder

IMAGE_SIZE = (300, 300)
CLASSES = 2  # horses, humans: one sigmoid unit


def training_data(directory, batch_size=128, seed=None):
    # Prepare the data: RGBA PNGs → RGB, 300x300, labels from the folder names, scaled to [0, 1].
    check_image_folder(directory, CLASSES)  # the same scan on both backends: see dual_backend/images.py
    dataset = tf.keras.utils.image_dataset_from_directory(
        directory, label_mode="binary", color_mode="rgb", image_size=IMAGE_SIZE, batch_size=batch_size,
        shuffle=True, seed=seed, verbose=False)
    rescale = tf.keras.layers.Rescaling(1 / 255)
    # repeat(): steps_per_epoch=8 batches of 128 then run over the 1,027 pictures without running dry.
    return dataset.map(lambda x, y: (rescale(x), y)).repeat().prefetch(tf.data.AUTOTUNE)


def validation_data(directory, batch_size=128):
    check_image_folder(directory, CLASSES)
    dataset = tf.keras.utils.image_dataset_from_directory(
        directory, label_mode="binary", color_mode="rgb", image_size=IMAGE_SIZE, batch_size=batch_size,
        shuffle=False, verbose=False)
    rescale = tf.keras.layers.Rescaling(1 / 255)
    return dataset.map(lambda x, y: (rescale(x), y)).prefetch(tf.data.AUTOTUNE)


def build_model(input_shape=(300, 300, 3)):
    # Build the model: four convolution+pooling blocks, then a dense layer and one sigmoid unit.
    model = tf.keras.Sequential([
        tf.keras.Input(shape=input_shape),
        tf.keras.layers.Conv2D(16, (3, 3), activation="relu"),
        tf.keras.layers.MaxPooling2D(2, 2),
        tf.keras.layers.Conv2D(32, (3, 3), activation="relu"),
        tf.keras.layers.MaxPooling2D(2, 2),
        tf.keras.layers.Conv2D(64, (3, 3), activation="relu"),
        tf.keras.layers.MaxPooling2D(2, 2),
        tf.keras.layers.Conv2D(64, (3, 3), activation="relu"),
        tf.keras.layers.MaxPooling2D(2, 2),
        tf.keras.layers.Flatten(),
        tf.keras.layers.Dense(512, activation="relu"),
        tf.keras.layers.Dense(1, activation="sigmoid"),
    ])
    # Compile: RMSprop at 0.001, binary cross-entropy, and the metric under the name 'acc'.
    model.compile(loss="binary_crossentropy", optimizer=tf.keras.optimizers.RMSprop(learning_rate=0.001),
                  metrics=["acc"])
    return model
