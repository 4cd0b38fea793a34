"""`python -m fmnist.bench`: what fmnist costs over a hand-written loop, how fast data and inference are,
and how long the speedrun recipe takes to reach a test accuracy. One module per measurement."""
