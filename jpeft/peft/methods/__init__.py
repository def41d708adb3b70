"""Every method of the study, one module per family; importing this package registers them all."""
from jpeft.peft.methods import adapters, dora, fact, ia3, lora, prompts, ssf, vera, weights  # noqa: F401
