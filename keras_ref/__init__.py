"""The course's tf.keras programs, one file per lesson; ``backend.py`` plugs them into the front end."""
