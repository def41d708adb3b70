"""Initialisers the methods share, named after the PyTorch code of the study they reproduce."""
from flax import linen as nn

# torch.nn.Linear's default, kaiming_uniform(a=sqrt(5)): U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
TORCH_LINEAR = nn.initializers.variance_scaling(1 / 3, "fan_in", "uniform")
XAVIER = nn.initializers.xavier_uniform()
ZEROS = nn.initializers.zeros
