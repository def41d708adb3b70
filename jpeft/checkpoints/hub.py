"""Known pretrained checkpoints, where they live, and a local cache for them.

A known name resolves to one file under the cache directory (default `~/.cache/jpeft`):
  'ViT-B_16', 'ViT-B_32', 'ViT-L_16', 'ViT-L_32', 'ViT-H_14'   ImageNet-21K ViTs of Dosovitskiy et al.
      https://storage.googleapis.com/vit_models/imagenet21k/<name>.npz  -> <cache>/vit_models/imagenet21k/<name>.npz
  an AugReg file stem, e.g. 'B_16-i21k-300ep-lr_0.001-aug_medium1-wd_0.1-do_0.0-sd_0.0' (Steiner et al.)
      https://storage.googleapis.com/vit_models/augreg/<name>.npz      -> <cache>/vit_models/augreg/<name>.npz
  'clip-vit-b16-openai'            the Hugging Face repo timm/vit_base_patch16_clip_224.openai (timm layout)
  'openai/clip-vit-base-patch16'   the Hugging Face CLIP repo (Hugging Face layout; the text tower is skipped)
  'timm/<model>.<tag>'             any timm repo on the Hugging Face hub, e.g. 'timm/vit_base_patch16_224.augreg_in21k'
      -> <cache>/hf/<owner>--<repo>/<file>, fetched with `huggingface_hub.hf_hub_download`.
A file already at its cache path is used as is, so offline machines work once the file is put there by hand.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import re
import shutil
import socket
import urllib.error
import urllib.parse
import urllib.request
from typing import Optional

from jpeft.checkpoints.errors import CheckpointError

BUCKET = "https://storage.googleapis.com/vit_models"
DEFAULT_CACHE = os.path.join("~", ".cache", "jpeft")
_IMAGENET21K = ("ViT-B_16", "ViT-B_32", "ViT-L_16", "ViT-L_32", "ViT-H_14")
_AUGREG = re.compile(r"(R\w+\+)?[A-Za-z]+_\d+-i(1k|21k)-\d+ep-lr_[\d.]+-aug_\w+-wd_[\d.]+-do_[\d.]+-sd_[\d.]+.*")
_HF_ALIASES = {"clip-vit-b16-openai": "timm/vit_base_patch16_clip_224.openai"}
# Files tried in order in a Hugging Face repo: safetensors first (no torch needed), the pickle as a fallback.
_HF_FILES = ("model.safetensors", "pytorch_model.bin")


@dataclasses.dataclass(frozen=True)
class Source:
  """Where a known checkpoint comes from: an HTTPS url (cached at cache_path, relative to the cache directory),
  or a Hugging Face repo and the files to try in it, in order."""
  name: str
  url: Optional[str] = None
  cache_path: Optional[str] = None
  repo: Optional[str] = None
  files: tuple[str, ...] = ()


def known_source(name: str) -> Optional[Source]:
  """The Source of a known checkpoint name, or None if the name is not one (see the module docstring)."""
  if name in _IMAGENET21K:
    return Source(name, url=f"{BUCKET}/imagenet21k/{name}.npz", cache_path=f"vit_models/imagenet21k/{name}.npz")
  if _AUGREG.fullmatch(name):
    return Source(name, url=f"{BUCKET}/augreg/{name}.npz", cache_path=f"vit_models/augreg/{name}.npz")
  repo = _HF_ALIASES.get(name, name)
  if re.fullmatch(r"(timm|openai)/[\w.\-]+", repo):
    return Source(name, repo=repo, files=_HF_FILES)
  return None


def _cache_root(cache_dir: Optional[str]) -> str:
  return os.path.expanduser(cache_dir or DEFAULT_CACHE)


def local_paths(source: Source, cache_dir: Optional[str] = None) -> list[str]:
  """The cache paths a source may occupy, in order of preference."""
  root = _cache_root(cache_dir)
  if source.url:
    return [os.path.join(root, *source.cache_path.split("/"))]
  folder = os.path.join(root, "hf", source.repo.replace("/", "--"))
  return [os.path.join(folder, f) for f in source.files]


def _fetch_url(url: str, path: str) -> None:
  """Streams url to path through a temporary file, so an interrupted download never looks complete."""
  os.makedirs(os.path.dirname(path), exist_ok=True)
  tmp = f"{path}.part{os.getpid()}"
  logging.info("Downloading %s to %s", url, path)
  try:
    with urllib.request.urlopen(url, timeout=60) as response, open(tmp, "wb") as f:
      shutil.copyfileobj(response, f, length=1 << 20)
    os.replace(tmp, path)
  finally:
    if os.path.exists(tmp):
      os.remove(tmp)


class HubUnreachable(OSError):
  """The Hugging Face hub cannot be reached at all: offline mode, or no connection within a few seconds."""


def _check_hub_reachable() -> None:
  """Raises HubUnreachable unless the hub's endpoint accepts a connection: checked before downloading, since
  huggingface_hub retries a refused connection for about 30 s, logging each try."""
  from huggingface_hub import constants  # pylint: disable=import-outside-toplevel
  if constants.HF_HUB_OFFLINE:
    raise HubUnreachable("HF_HUB_OFFLINE is set")
  endpoint = urllib.parse.urlparse(constants.ENDPOINT)
  port = endpoint.port or (443 if endpoint.scheme == "https" else 80)
  try:
    socket.create_connection((endpoint.hostname, port), timeout=5).close()
  except OSError as e:
    raise HubUnreachable(f"{endpoint.hostname}:{port} cannot be reached: {e}") from e


def _fetch_hf(repo: str, filename: str, path: str) -> None:
  from huggingface_hub import hf_hub_download  # pylint: disable=import-outside-toplevel
  _check_hub_reachable()
  logging.info("Downloading %s/%s from the Hugging Face hub to %s", repo, filename, path)
  hf_hub_download(repo_id=repo, filename=filename, local_dir=os.path.dirname(path))


def _absent_on_hub(error: Exception) -> bool:
  """True when the hub answered that the file is not in the repo (so another file name may be tried)."""
  from huggingface_hub import errors  # pylint: disable=import-outside-toplevel
  return isinstance(error, errors.EntryNotFoundError) and not isinstance(error, errors.LocalEntryNotFoundError)


def fetch(source: Source, cache_dir: Optional[str] = None) -> str:
  """Path of the checkpoint in the cache, downloading it first when it is not there.

  Raises CheckpointError when it cannot be downloaded (offline, no such file), saying where to put it by hand.
  """
  paths = local_paths(source, cache_dir)
  for path in paths:
    if os.path.isfile(path):
      return path
  errors = []
  for path, filename in zip(paths, source.files or (None,)):
    try:
      if source.url:
        _fetch_url(source.url, path)
      else:
        _fetch_hf(source.repo, filename, path)
      return path
    # Network failures surface as different types depending on the transport (urllib, requests, httpx) and
    # huggingface_hub version; each is reported to the user below, none is swallowed.
    except Exception as e:  # pylint: disable=broad-except
      errors.append(str(e) if isinstance(e, HubUnreachable) else f"{type(e).__name__}: {e}")
      if not _absent_on_hub(e):  # offline or refused: the next file would fail the same way, after retries
        break
  where = (f"download {source.url} and save it as {paths[0]}" if source.url else
           f"download one of {', '.join(f'https://huggingface.co/{source.repo}/resolve/main/{f}' for f in source.files)}"
           f" into {os.path.dirname(paths[0])}/ (keeping its file name)")
  raise CheckpointError(f"Cannot download the pretrained checkpoint '{source.name}' ({'; '.join(errors)[:300]}). "
                        f"If this machine is offline, {where}, or pass the file's path instead of the name "
                        "(config.pretrained.path).")


def resolve(name_or_path: str, cache_dir: Optional[str] = None) -> str:
  """A local file path for a path or a known name (downloaded into the cache if needed)."""
  path = os.path.expanduser(name_or_path)
  if os.path.isfile(path):
    return path
  source = known_source(name_or_path)
  if source is None:
    raise CheckpointError(f"'{name_or_path}' is neither an existing file nor a known checkpoint name. Known names: "
                          f"{', '.join(_IMAGENET21K)}, AugReg file stems such as "
                          "'B_16-i21k-300ep-lr_0.001-aug_medium1-wd_0.1-do_0.0-sd_0.0', "
                          f"{', '.join(_HF_ALIASES)}, 'openai/clip-vit-base-patch16' and 'timm/<model>.<tag>'.")
  return fetch(source, cache_dir)
