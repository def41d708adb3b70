"""jpeft: parameter-efficient fine-tuning of Vision Transformers in JAX/Flax."""
import setuptools

setuptools.setup(
    name="jpeft",
    version="0.1.0",
    description="Parameter-efficient fine-tuning (PEFT) of Vision Transformers in JAX/Flax, with the VTAB-1K benchmark.",
    # Namespace discovery so the data-only folder jpeft/assets (the shipped mini backbone) is a package too.
    packages=setuptools.find_namespace_packages(include=["jpeft", "jpeft.*"]),
    package_data={"jpeft.assets": ["*.npz", "*.json"]},
    python_requires=">=3.10",
    install_requires=[
        "jax",
        "flax",
        "optax",
        "orbax-checkpoint",
        "tensorflow-datasets",
        "tensorflow-cpu",
        "ml-collections",
        "chex",
        "absl-py",
        "tqdm",
        "numpy",
        "safetensors",
        "huggingface_hub",
        "matplotlib",
        "scikit-learn",  # its bundled digits feed the offline mini_digits task (jpeft.data.mini_vtab)
    ],
    extras_require={"test": ["pytest"]},
)
