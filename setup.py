"""jpeft: parameter-efficient fine-tuning of Vision Transformers in JAX/Flax."""
import setuptools

setuptools.setup(
    name="jpeft",
    version="0.1.0",
    description="Parameter-efficient fine-tuning (PEFT) of Vision Transformers in JAX/Flax, with the VTAB-1K benchmark.",
    # Namespace discovery so the data-only folder jpeft/assets (the shipped mini backbone) is a package too.
    packages=setuptools.find_namespace_packages(include=["jpeft", "jpeft.*"]) + ["jpeft.configs"],
    # The top-level configs/ installs as jpeft.configs, so `--config=vtab_lora` names a shipped config after a
    # plain `pip install` (jpeft.cli.resolve_config_path); in a checkout configs/ stays where it is.
    package_dir={"jpeft.configs": "configs"},
    # The mini backbone; OpenAI's CLIP BPE vocabulary, ImageNet class names and prompt templates (jpeft.zeroshot).
    package_data={"jpeft.assets": ["*.npz", "*.json", "*.txt", "*.txt.gz"]},
    python_requires=">=3.10",
    license="Apache-2.0",
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
        "tokenizers",  # CLIP's BPE tokenizer in Rust (jpeft.models.clip_tokenizer)
        "ftfy",  # CLIP's text cleaning before tokenizing, as OpenAI's and open_clip's tokenizers
        "matplotlib",
        "scikit-learn",  # its bundled digits feed the offline mini_digits task (jpeft.data.mini_vtab)
        # What the TFDS builders of the VTAB-1K and ImageNet tasks import but tensorflow-datasets does not
        # install (tests/data/test_builders_prepare.py checks each one):
        "importlib_resources",  # every builder: TFDS's download_and_prepare imports it on any Python
        "scipy",  # oxford_flowers102, svhn_cropped (.mat files)
        "h5py",  # dsprites, patch_camelyon (.h5 files)
        "opencv-python-headless",  # sun397, diabetic_retinopathy_detection, kitti (image decode / resize)
        "tifffile",  # eurosat (its module reads the .tif files of the multispectral config)
    ],
    # nbclient, nbformat, ipykernel: tests/test_notebooks.py executes every notebook under notebooks/.
    # mkdocs, mkdocs-material, mkdocstrings[python]: tests/docs/test_docs_build.py runs `mkdocs build --strict`.
    extras_require={"test": ["pytest", "pytest-xdist", "nbclient", "nbformat", "ipykernel", "mkdocs",
                             "mkdocs-material", "mkdocstrings[python]"]},
)
