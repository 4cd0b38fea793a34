"""Fashion-MNIST loading, validation splits and batch serving."""
