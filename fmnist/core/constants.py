"""Facts about Fashion-MNIST itself, shared by data, metrics and figures."""

CLASS_NAMES: tuple[str, ...] = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
NUM_CLASSES = len(CLASS_NAMES)
IMAGE_SIZE = 28
NUM_TEST = 10_000
# How a model reads an image: `image` as (B, 1, 28, 28), `rows` as (B, 28, 28), one row per time step
INPUT_KINDS = ("image", "rows")
