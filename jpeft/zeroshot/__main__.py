"""Builds (and caches) a CLIP zero-shot head, e.g. the study's ImageNet head of CLIP ViT-B/16:

  python -m jpeft.zeroshot --checkpoint=openai/clip-vit-base-patch16 [--classnames=imagenet]
      [--templates=openai_imagenet] [--out=head.npz]

Prints one JSON line: the cache file, classes, templates, embedding width, logit scale and seconds. The `.npz`
(cache or --out) holds `proj/kernel` [D, E], `head/kernel` [E, C] and `head/bias` [C]; a training run builds
the same head itself with --config.head_init=zeroshot (see `jpeft.zeroshot`).
"""
import json
import shutil
import time

from absl import app, flags

from jpeft import cli, zeroshot

_CHECKPOINT = flags.DEFINE_string("checkpoint", None, "A whole CLIP checkpoint (both towers): a file (OpenAI .pt, "
                                  "open_clip .bin/.safetensors, Hugging Face model.safetensors) or a known name "
                                  "such as openai/clip-vit-base-patch16.")
_CLASSNAMES = flags.DEFINE_string("classnames", "imagenet", "'imagenet' (OpenAI's 1000 curated class names) or a "
                                  "text file with one class name per line, in label order.")
_TEMPLATES = flags.DEFINE_string("templates", "openai_imagenet", "'openai_imagenet' (OpenAI's 80 prompt "
                                 "templates) or a text file with one template per line, '{}' for the class name.")
_NUM_HEADS = flags.DEFINE_integer("num_heads", None, "Text-tower attention heads (default width // 64, right for "
                                  "every OpenAI and open_clip CLIP).")
_ACT = flags.DEFINE_enum("act", "quick_gelu", ["quick_gelu", "gelu"], "Text-tower MLP activation: quick_gelu "
                         "for OpenAI's models, gelu for open_clip models trained without QuickGELU.")
_VOCAB = flags.DEFINE_string("vocab", None, "Tokenizer vocabulary: a Hugging Face folder with vocab.json + "
                             "merges.txt or a bpe_simple_vocab_16e6.txt.gz (default: the one jpeft ships).")
_CACHE_DIR = flags.DEFINE_string("cache_dir", None, "Checkpoint and head cache (default ~/.cache/jpeft).")
_OUT = flags.DEFINE_string("out", None, "Also copy the head's .npz here.")
flags.mark_flag_as_required("checkpoint")


def main(argv) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments {argv[1:]}: pass options as --flag=value.")
  start = time.time()
  head = zeroshot.build_head(_CHECKPOINT.value, _CLASSNAMES.value, _TEMPLATES.value, num_heads=_NUM_HEADS.value,
                             act=_ACT.value, vocab=_VOCAB.value, cache_dir=_CACHE_DIR.value)
  cache = zeroshot.cache_path(_CHECKPOINT.value, _CLASSNAMES.value, _TEMPLATES.value, num_heads=_NUM_HEADS.value,
                              act=_ACT.value, vocab=_VOCAB.value, cache_dir=_CACHE_DIR.value)
  if _OUT.value:
    shutil.copyfile(cache, _OUT.value)
  kernel = head["head"]["kernel"]
  print(json.dumps(dict(cache=cache, out=_OUT.value, classes=kernel.shape[1],
                        templates=len(zeroshot.read_list(_TEMPLATES.value, "templates")), embed_dim=kernel.shape[0],
                        # each column is logit_scale x a unit-norm class embedding
                        logit_scale=float(((kernel ** 2).sum(0) ** 0.5).mean()),
                        seconds=round(time.time() - start, 2))))


if __name__ == "__main__":
  cli.run_program(main, "jpeft.zeroshot", (), errors=(ValueError,))
