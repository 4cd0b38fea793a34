"""Using a trained model: rebuild it from its checkpoint, feed it images, evaluate, export; shared by eval, predict
and export, so all three see a checkpoint, an image and the normalisation the same way."""
