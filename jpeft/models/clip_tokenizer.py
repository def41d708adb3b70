"""CLIP's byte-level BPE tokenizer (Radford et al., 2021), giving the token ids of OpenAI's `clip.tokenize`.

Text -> ids as OpenAI CLIP and open_clip do it:
  1. clean: `ftfy.fix_text` (mojibake, curly quotes, NFC), HTML entities unescaped twice, whitespace runs -> one
     space, strip, lower-case. This is plain Python, the same calls as OpenAI's `simple_tokenizer.py`.
  2. split into words with CLIP's regex (contractions, letter runs, single digits, punctuation runs), map each
     word's UTF-8 bytes to printable characters (GPT-2's byte-to-unicode table), apply the BPE merges with
     `</w>` marking a word's end.
  3. [SOT] + ids + [EOT], cut to the context length (77) keeping EOT last, padded with 0.
Step 2 runs in Hugging Face `tokenizers` (a maintained Rust implementation, what transformers' CLIPTokenizerFast
uses): BPE merging is the slow part of building a zero-shot head (1000 classes x 80 templates = 80,000 prompts),
and a library used by every CLIP in transformers is better tested than a re-typed merge loop.

Vocabularies: the one that ships with the weights. A Hugging Face CLIP repo has `vocab.json` + `merges.txt`;
OpenAI's and open_clip's models use `bpe_simple_vocab_16e6.txt.gz` (merges only; the vocabulary is derived from
them as OpenAI's code does). All of them are the same 49,408-token vocabulary, and the `.gz` (1.3 MB, MIT
licence) is vendored in `jpeft/assets/` because OpenAI's `.pt` checkpoints do not carry it: it is the default.
"""
from __future__ import annotations

import functools
import gzip
import html
import json
import os
from typing import Optional, Sequence

import numpy as np

ASSETS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "assets")
DEFAULT_VOCAB = os.path.join(ASSETS, "bpe_simple_vocab_16e6.txt.gz")
SOT, EOT = "<|startoftext|>", "<|endoftext|>"
# OpenAI's simple_tokenizer.py pattern, less its special-token alternatives (tokenizers matches those first).
_WORDS = r"""'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""


def _bytes_to_unicode() -> list[str]:
  """GPT-2's table: byte b -> a printable character (printable bytes map to themselves), in OpenAI's order."""
  keep = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), 256))
  chars, extra = {}, 0
  for b in range(256):
    if b in keep:
      chars[b] = chr(b)
    else:
      chars[b] = chr(256 + extra)
      extra += 1
  return [chars[b] for b in sorted(keep)] + [chars[b] for b in range(256) if b not in keep]


def openai_vocab(path: str) -> tuple[dict[str, int], list[tuple[str, str]]]:
  """OpenAI's `bpe_simple_vocab_16e6.txt.gz` -> (token -> id, merges), as `SimpleTokenizer.__init__` builds them:
  256 byte characters, the same with `</w>`, one token per merge (the first 48,894), then SOT and EOT."""
  lines = gzip.open(path).read().decode("utf-8").split("\n")
  merges = [tuple(line.split()) for line in lines[1:49152 - 256 - 2 + 1]]
  tokens = _bytes_to_unicode()
  tokens = tokens + [t + "</w>" for t in tokens] + ["".join(m) for m in merges] + [SOT, EOT]
  return {t: i for i, t in enumerate(tokens)}, merges


def hf_vocab(folder: str) -> tuple[dict[str, int], list[tuple[str, str]]]:
  """A Hugging Face CLIP repo's `vocab.json` + `merges.txt` -> (token -> id, merges)."""
  with open(os.path.join(folder, "vocab.json"), encoding="utf-8") as f:
    vocab = json.load(f)
  with open(os.path.join(folder, "merges.txt"), encoding="utf-8") as f:
    merges = [tuple(line.split()) for line in f.read().split("\n") if line and not line.startswith("#version")]
  return vocab, merges


def clean(text: str) -> str:
  """OpenAI's basic_clean + whitespace_clean + lower()."""
  import ftfy  # pylint: disable=import-outside-toplevel  (only text needs it)
  text = html.unescape(html.unescape(ftfy.fix_text(text))).strip()
  return " ".join(text.split()).lower()


class ClipTokenizer:
  """Strings -> [N, context_length] int32 token ids (see the module docstring)."""

  def __init__(self, vocab: dict[str, int], merges: Sequence[tuple[str, str]], context_length: int = 77):
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers  # pylint: disable=import-outside-toplevel
    self.context_length = context_length
    self.sot, self.eot = vocab[SOT], vocab[EOT]
    bpe = models.BPE(vocab=vocab, merges=list(merges), continuing_subword_prefix="", end_of_word_suffix="</w>",
                     fuse_unk=False, unk_token=EOT)
    self._tokenizer = Tokenizer(bpe)
    self._tokenizer.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(_WORDS), behavior="removed", invert=True),  # keep the matches, drop the rest
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    self._tokenizer.add_special_tokens([SOT, EOT])  # written literally in a text, they are one token each

  def __call__(self, texts: Sequence[str] | str) -> np.ndarray:
    """texts: a string or N strings -> int32 [N, context_length]: SOT, ids, EOT, zeros (EOT last if cut)."""
    texts = [texts] if isinstance(texts, str) else list(texts)
    out = np.zeros((len(texts), self.context_length), np.int32)
    encoded = self._tokenizer.encode_batch([clean(t) for t in texts], add_special_tokens=False)
    for row, encoding in enumerate(encoded):
      ids = [self.sot, *encoding.ids, self.eot][:self.context_length]
      ids[-1] = self.eot
      out[row, :len(ids)] = ids
    return out


@functools.lru_cache(maxsize=4)
def load_tokenizer(vocab: Optional[str] = None, context_length: int = 77) -> ClipTokenizer:
  """The CLIP tokenizer for a vocabulary: None (the vendored OpenAI file), a `.txt.gz` merges file, or a folder
  with a Hugging Face `vocab.json` + `merges.txt` (e.g. a downloaded `openai/clip-vit-base-patch16`)."""
  path = os.path.expanduser(vocab or DEFAULT_VOCAB)
  if os.path.isdir(path) and os.path.isfile(os.path.join(path, "vocab.json")):
    return ClipTokenizer(*hf_vocab(path), context_length=context_length)
  if os.path.isfile(path) and path.endswith(".gz"):
    return ClipTokenizer(*openai_vocab(path), context_length=context_length)
  raise ValueError(f"CLIP vocabulary '{vocab}' is neither a folder with vocab.json and merges.txt (a Hugging Face "
                   "CLIP repo) nor a bpe_simple_vocab_16e6.txt.gz file (OpenAI CLIP / open_clip); pass one of "
                   "those, or nothing for the vocabulary jpeft ships.")
