"""`python -m fmnist.report <dir> ...`: compare every model that ran below some run or sweep dirs."""
