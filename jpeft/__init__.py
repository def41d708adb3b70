"""jpeft: parameter-efficient fine-tuning of Vision Transformers in JAX/Flax."""
