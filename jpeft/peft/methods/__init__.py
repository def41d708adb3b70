"""Every method of the study, one module per family; importing this package registers them all."""
from jpeft.peft.methods import adapters, fact, loha_lokr, lora, oft, prompts, ssf, weights  # noqa: F401
