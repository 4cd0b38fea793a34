"""Using a trained model: rebuild it from its checkpoint, feed it images, evaluate, export.

Shared by the `fmnist.eval`, `fmnist.predict` and `fmnist.export` entry points, so all three see a
checkpoint, an image and the normalisation exactly the same way.
"""
