"""Every method of the study, one module per family; importing this package registers them all."""
from jpeft.peft.methods import (adapters, dora, fact, hra, ia3, loha_lokr, lora, oft, prompts, road, ssf,  # noqa: F401
                                 vera, weights)
