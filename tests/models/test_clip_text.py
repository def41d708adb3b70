"""The CLIP tokenizer and text tower against open_clip and transformers (fixtures by make_clip_text_reference.py).

token_ids come from open_clip's tokenizer on strings with punctuation, accents, curly quotes, HTML entities, CJK,
emoji and ImageNet class names; the text features from open_clip's TextTransformer / CLIP.encode_text (and the
Hugging Face file is checked against transformers' CLIPTextModelWithProjection when it is made).
"""
import json
import os

import numpy as np
import pytest

from jpeft.checkpoints import CheckpointError
from jpeft.checkpoints.clip_text import read_clip_text
from jpeft.models import clip_tokenizer
from jpeft.models.clip_text import text_model_for

FIXTURES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "fixtures")
REF = dict(np.load(os.path.join(FIXTURES, "reference_clip_text.npz")))


def fixture(name):
  return os.path.join(FIXTURES, name)


def test_tokenizer_matches_open_clip():
  ids = clip_tokenizer.load_tokenizer()(list(REF["token_strings"]))
  assert ids.dtype == np.int32 and ids.shape == (len(REF["token_strings"]), 77)
  np.testing.assert_array_equal(ids, REF["token_ids"])


def test_tokenizer_reads_hugging_face_vocab_files(tmp_path):
  """A Hugging Face repo's vocab.json + merges.txt (written here from the same vocabulary) tokenize the same."""
  vocab, merges = clip_tokenizer.openai_vocab(clip_tokenizer.DEFAULT_VOCAB)
  with open(tmp_path / "vocab.json", "w", encoding="utf-8") as f:
    json.dump(vocab, f, ensure_ascii=False)
  with open(tmp_path / "merges.txt", "w", encoding="utf-8") as f:
    f.write("#version: 0.2\n" + "\n".join(" ".join(m) for m in merges) + "\n")
  ids = clip_tokenizer.load_tokenizer(str(tmp_path))(list(REF["token_strings"]))
  np.testing.assert_array_equal(ids, REF["token_ids"])


def test_tokenizer_rejects_an_unknown_vocabulary(tmp_path):
  with pytest.raises(ValueError, match="vocab.json and merges.txt"):
    clip_tokenizer.load_tokenizer(str(tmp_path))


@pytest.mark.parametrize("layout,expected", [("openai", "OpenAI CLIP"), ("open_clip", "open_clip CustomTextCLIP"),
                                             ("hf", "Hugging Face CLIP")])
def test_text_tower_matches_open_clip_in_every_layout(layout, expected):
  clip = read_clip_text(fixture(f"clip_text_mu_{layout}.safetensors"))
  assert clip.layout == expected
  model = text_model_for(clip.params, num_heads=2)
  assert (model.vocab_size, model.context_length, model.width, model.depth, model.mlp_dim,
          model.projection_dim) == (100, 77, 32, 2, 128, 16)
  features = np.asarray(model.apply({"params": clip.params}, REF["mu_ids"]))
  np.testing.assert_allclose(features, REF["mu_features"], atol=1e-4)


def test_whole_clip_text_features_from_strings():
  """Tokenizer + text tower of a CLIP with the real vocabulary reproduce open_clip's encode_text."""
  clip = read_clip_text(fixture("clip_zeroshot_mu.safetensors"))
  assert clip.visual_proj.shape == (32, 16) and clip.logit_scale == pytest.approx(50.0, rel=1e-6)
  model = text_model_for(clip.params, num_heads=2)
  ids = clip_tokenizer.load_tokenizer()(list(REF["token_strings"]))
  features = np.asarray(model.apply({"params": clip.params}, ids))
  np.testing.assert_allclose(features, REF["zs_text_features"], atol=1e-4)


@pytest.mark.parametrize("name,match", [("clip_mu8_timm.safetensors", "holds no CLIP text tower"),
                                        ("clip_mu8_openai.safetensors", "lacks"),
                                        ("vit_mu8.npz", "no CLIP text tower")])
def test_checkpoints_without_a_text_tower_are_rejected(name, match):
  with pytest.raises(CheckpointError, match=match):
    read_clip_text(fixture(name))
