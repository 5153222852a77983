"""The embedded models: procedurally drawn, captioned scenes, the scene detector, the training scripts
and their loss logs (``logs/``)."""
