"""Every method of the study, one module per family; importing this package registers them all."""
from jpeft.peft.methods import lora, weights  # noqa: F401
