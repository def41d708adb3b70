"""Every method of the study, one module per family; importing this package registers them all."""
from jpeft.peft.methods import (adapters, c3a, dora, fact, fourierft, glora, hra, ia3, loha_lokr, lora,  # noqa: F401
                                 oft, prompts, pvera, road, ssf, vera, weights)
