"""`python -m fmnist.bench`: what fmnist costs over a hand-written loop, how fast data, inference and each speed
switch are, and how long the speedrun recipe takes to reach a test accuracy (docs/speed.md)."""
