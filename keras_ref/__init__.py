"""The course's tf.keras programs, one file per lesson; ``_model.py`` plugs them into the front end."""
