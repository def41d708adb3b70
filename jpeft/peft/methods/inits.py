"""Initialisers the methods share, named after the PyTorch code of the study they reproduce."""
from flax import linen as nn

# torch.nn.Linear's default, kaiming_uniform(a=sqrt(5)): U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
TORCH_LINEAR = nn.initializers.variance_scaling(1 / 3, "fan_in", "uniform")
# Kaiming-uniform with gain sqrt(2) (torch's kaiming_uniform_ default, a=0): U(-sqrt(6/fan_in), sqrt(6/fan_in)),
# what the PyTorch PEFT library's VeRA (`peft.tuners.vera.model._kaiming_init`) draws its projections from.
KAIMING_UNIFORM = nn.initializers.variance_scaling(2.0, "fan_in", "uniform")
XAVIER = nn.initializers.xavier_uniform()
ZEROS = nn.initializers.zeros
