"""An independent float64 numpy ViT with every PEFT method written from `shared/spec/methods.md`.

It reads the parameters by their documented paths but shares no code with `jpeft/peft`: each method is
the spec's formula, spelled out per token / per chunk where the module uses reshapes and einsums.
"""
import numpy as np
from scipy.special import erf


def _np(tree):
  return {k: _np(v) for k, v in tree.items()} if isinstance(tree, dict) else np.asarray(tree, np.float64)


def layer_norm(x, p, eps=1e-6):
  mean = x.mean(-1, keepdims=True)
  var = ((x - mean) ** 2).mean(-1, keepdims=True)
  return (x - mean) / np.sqrt(var + eps) * p["scale"] + p["bias"]


def gelu(x):
  return 0.5 * x * (1 + erf(x / np.sqrt(2)))


def quick_gelu(x):
  return x / (1 + np.exp(-1.702 * x))


def relu(x):
  return np.maximum(x, 0)


def dense(x, p):
  return x @ p["kernel"] + p["bias"]


# Published wiring of the modules whose wiring is a hyperparameter (spec table): style, sublayers.
WIRING = {"adapter": ("sequential_after", ("attn", "mlp")), "convpass": ("parallel_post_ln", ("attn", "mlp")),
          "repadapter": ("sequential_before", ("attn", "mlp"))}


class Reference:
  """forward(images) of the model with `method` ('lora' or several joined by '+', hyperparameters `hp`:
  name -> dict) at merge factor `mf`. At a shared site, LoRA / FacT deltas come before SSF's scale.
  Adapter, Convpass and RepAdapter are wired as hp[name]['style'] / ['sublayers'] say (default: WIRING), by
  the spec's list of wirings; hp[name]['learnable_scale'] multiplies their output by '<prefix>_scale'."""

  def __init__(self, params, method, hp, mf, num_heads, patch):
    self.names = set(method.split("+"))
    self.p, self.hp, self.mf = _np(params), hp, mf
    self.fact = next((n for n in self.names if n.startswith("fact")), None)
    self.heads, self.patch = num_heads, patch
    self.depth = len([k for k in self.p["encoder"] if k.startswith("block_")])

  # ---- method pieces, as the spec writes them ----
  def ssf(self, scope, site, y):
    if "ssf" not in self.names:
      return y
    gamma, beta = scope[f"ssf_{site}_scale"], scope[f"ssf_{site}_shift"]
    return (1 - self.mf) * y + self.mf * (gamma * y + beta)  # interpolate plain and SSF(y)

  def gain(self, scope, name, prefix):
    """merge_factor * s, times the learned scalar when the method has one."""
    learned = scope[f"{prefix}_scale"] if self.hp[name].get("learnable_scale", False) else 1.0
    return self.mf * self.hp[name]["scale"] * learned

  def bottleneck(self, scope, name, prefix, x, act):
    return self.gain(scope, name, prefix) * dense(act(dense(x, scope[f"{prefix}_down"])), scope[f"{prefix}_up"])

  def fact_cores(self, layer):
    """Per-block cores {name: [r, r]} with fc1 / fc2 as lists of per-chunk cores."""
    enc = self.p["encoder"]
    if self.fact == "fact_tt":
      a, m = enc[f"block_{layer}"]["attn"], enc[f"block_{layer}"]["mlp"]
      r = self.hp["fact_tt"]["rank"]
      cores = {n: a[f"fact_tt_sigma_{n}"] for n in "qkvo"}
      k = m["fact_tt_sigma_fc1"].shape[1] // r
      cores["fc1"] = [m["fact_tt_sigma_fc1"][:, j * r:(j + 1) * r] for j in range(k)]
      cores["fc2"] = [m["fact_tt_sigma_fc2"][j * r:(j + 1) * r] for j in range(k)]
      return cores
    core, p = enc["fact_tk_core"], enc["fact_tk_p"]
    slots, r = p.shape[1] // self.depth, core.shape[0]
    k = (slots - 4) // 2
    sigma = [sum(core[:, :, c] * p[c, layer * slots + j] for c in range(core.shape[2])) for j in range(slots)]

    # The MLP layout of the FacT authors' `fact_forward_mlp` (JieShibo/PETL-ViT, FacT/fact_tk.py): the k slots
    # stacked last, [r, r, k], reshaped row-major to [r, k r], so flat column c is column c // k of slot c % k;
    # chunk i (of fc1's output, or of fc2's input) uses flat columns i r .. i r + r - 1.
    def chunk(first_slot, i):
      return np.stack([sigma[first_slot + (i * r + t) % k][:, (i * r + t) // k] for t in range(r)], axis=1)

    return {"q": sigma[0], "k": sigma[1], "v": sigma[2], "o": sigma[3],
            "fc1": [chunk(4, i) for i in range(k)],
            "fc2": [chunk(4 + k, i).T for i in range(k)]}  # fc2's core is used transposed

  def fact_delta(self, layer, where, z):
    if self.fact is None:
      return 0
    enc, s = self.p["encoder"], self.mf * self.hp[self.fact]["scale"]
    u, v = enc[f"{self.fact}_u"], enc[f"{self.fact}_v"]
    c = self.fact_cores(layer)
    if where == "qkv":
      return s * np.concatenate([z @ u @ c[n] @ v for n in "qkv"], -1)
    if where == "proj":
      return s * (z @ u @ c["o"] @ v)
    if where == "fc1":
      return s * np.concatenate([z @ u @ cj @ v for cj in c["fc1"]], -1)
    d = u.shape[0]
    return s * sum(z[..., j * d:(j + 1) * d] @ u @ cj for j, cj in enumerate(c["fc2"])) @ v

  def convpass(self, bp, where, z, front, grid):
    prefix = f"convpass_{where}"
    down = quick_gelu(dense(z, bp[f"{prefix}_down"]))
    kernel, bias = bp[f"{prefix}_conv"]["kernel"], bp[f"{prefix}_conv"]["bias"]
    gh, gw = grid
    img = down[:, front:].reshape(down.shape[0], gh, gw, -1)
    padded = np.pad(img, ((0, 0), (1, 1), (1, 1), (0, 0)))
    conv = bias + sum(padded[:, dy:dy + gh, dx:dx + gw] @ kernel[dy, dx] for dy in range(3) for dx in range(3))
    singles = down[:, :front] @ kernel[1, 1] + bias  # a 1x1 image only meets the centre tap
    mid = quick_gelu(np.concatenate([singles, conv.reshape(down.shape[0], gh * gw, -1)], 1))
    return self.gain(bp, "convpass", prefix) * dense(mid, bp[f"{prefix}_up"])

  def repadapter(self, bp, where, z):
    a = dense(z, bp[f"repadapter_{where}_a"])
    kernel, bias = bp[f"repadapter_{where}_b_kernel"], bp[f"repadapter_{where}_b_bias"]
    half_in, half_out = kernel.shape[1], kernel.shape[2]
    b = np.concatenate([a[..., :half_in] @ kernel[0], a[..., half_in:] @ kernel[1]], -1) + bias
    assert b.shape[-1] == 2 * half_out
    return self.gain(bp, "repadapter", f"repadapter_{where}") * b

  def wired(self, bp, where, style, t, front, grid):
    """Sum of the outputs M(t) of the modules wired with `style` at sublayer `where`."""
    total = 0
    for name in ("adapter", "convpass", "repadapter"):
      if name not in self.names:
        continue
      default_style, default_sublayers = WIRING[name]
      if self.hp[name].get("style", default_style) != style or where not in self.hp[name].get(
          "sublayers", default_sublayers):
        continue
      if name == "adapter":
        act = gelu if self.hp[name].get("nonlinearity", "relu") == "gelu" else relu
        total = total + self.bottleneck(bp, "adapter", f"adapter_{where}", t, act)
      elif name == "convpass":
        total = total + self.convpass(bp, where, t, front, grid)
      else:
        total = total + self.repadapter(bp, where, t)
    return total

  # ---- the ViT ----
  def attention(self, layer, z, n_hidden):
    """n_hidden leading tokens are not keys (VQT's queries)."""
    ap = self.p["encoder"][f"block_{layer}"]["attn"]
    qkv = dense(z, ap["qkv"])
    if "lora" in self.names:
      qkv = qkv + self.mf * (z @ ap["lora_a"]["kernel"] @ ap["lora_b"]["kernel"])
    qkv = self.ssf(ap, "qkv", qkv + self.fact_delta(layer, "qkv", z))
    b, t, d3 = qkv.shape
    d, hd = d3 // 3, d3 // 3 // self.heads
    out = np.zeros((b, t, d))
    for h in range(self.heads):
      q = qkv[..., h * hd:(h + 1) * hd]
      k = qkv[..., d + h * hd:d + (h + 1) * hd]
      v = qkv[..., 2 * d + h * hd:2 * d + (h + 1) * hd]
      logits = q @ k.transpose(0, 2, 1) / np.sqrt(hd)
      logits[:, :, :n_hidden] = -np.inf
      w = np.exp(logits - logits.max(-1, keepdims=True))
      out[..., h * hd:(h + 1) * hd] = (w / w.sum(-1, keepdims=True)) @ v
    y = dense(out, ap["proj"]) + self.fact_delta(layer, "proj", out)
    return self.ssf(ap, "proj", y)

  def mlp(self, layer, z):
    mp = self.p["encoder"][f"block_{layer}"]["mlp"]
    h = self.ssf(mp, "fc1", dense(z, mp["fc1"]) + self.fact_delta(layer, "fc1", z))
    a = gelu(h)
    return self.ssf(mp, "fc2", dense(a, mp["fc2"]) + self.fact_delta(layer, "fc2", a))

  def sublayer(self, layer, where, x, front, grid, n_hidden):
    bp = self.p["encoder"][f"block_{layer}"]
    ln = "ln1" if where == "attn" else "ln2"
    z = self.ssf(bp, ln, layer_norm(x, bp[ln]))
    z_in = z + self.wired(bp, where, "sequential_before", z, front, grid)
    h = self.attention(layer, z_in, n_hidden) if where == "attn" else self.mlp(layer, z_in)
    h = h + self.wired(bp, where, "sequential_after", h, front, grid)
    if "pfeiffer" in self.names and where == "mlp":
      h = h + self.bottleneck(bp, "pfeiffer", "pfeiffer", h, relu)
    if "difffit" in self.names:
      gamma = bp["difffit_gamma1" if where == "attn" else "difffit_gamma2"]
      h = (1 + self.mf * (gamma - 1)) * h
    out = x + h
    if "adaptformer" in self.names and where == "mlp":
      out = out + self.bottleneck(bp, "adaptformer", "adaptformer", x, relu)
    out = out + self.wired(bp, where, "parallel_pre_ln", x, front, grid)
    out = out + self.wired(bp, where, "parallel_post_ln", z, front, grid)
    return out + self.wired(bp, where, "post", out, front, grid)

  def __call__(self, images):
    p, patch = self.p, self.patch
    images = np.asarray(images, np.float64)
    b, hgt, wid, _ = images.shape
    gh, gw = hgt // patch, wid // patch
    pixels = images.reshape(b, gh, patch, gw, patch, 3).transpose(0, 1, 3, 2, 4, 5).reshape(b, gh * gw, -1)
    x = pixels @ p["embedding"]["kernel"].reshape(-1, p["embedding"]["kernel"].shape[-1])
    x = self.ssf(p, "embed", x + p["embedding"]["bias"])
    x = np.concatenate([np.repeat(p["cls"], b, 0), x], 1) + p["pos_embedding"]
    enc = p["encoder"]
    queries = []
    shallow = enc["vpt_shallow_prompts"].shape[0] if "vpt_shallow" in self.names else 0
    # The shallow prompts stay through every block unless keep_prompts=False (then: block 0 only, as the study).
    keep_shallow = self.hp.get("vpt_shallow", {}).get("keep_prompts", True)
    # VPT-deep prompts the last num_layers blocks (0: all), with one prompt set per prompted block.
    first_deep = self.depth - (self.hp.get("vpt_deep", {}).get("num_layers", 0) or self.depth)
    for layer in range(self.depth):
      if layer == 0 and shallow:
        x = np.concatenate([np.repeat(enc["vpt_shallow_prompts"][None], b, 0), x], 1)
      n_new = n_hidden = 0
      for inserted in ("vpt_deep", "vqt"):  # each prepended in turn: VQT's queries end up in front
        if inserted in self.names and (inserted == "vqt" or layer >= first_deep):
          tokens = (enc["vpt_deep_prompts"][layer - first_deep] if inserted == "vpt_deep"
                    else enc["vqt_queries"][layer])
          x = np.concatenate([np.repeat(tokens[None], b, 0), x], 1)
          n_new += tokens.shape[0]
          n_hidden = tokens.shape[0] if inserted == "vqt" else n_hidden
      front = x.shape[1] - gh * gw
      for where in ("attn", "mlp"):
        x = self.sublayer(layer, where, x, front, (gh, gw), n_hidden)
      if "vqt" in self.names:
        queries.append(x[:, :n_hidden])
      x = x[:, n_new:]
      if shallow and (layer == self.depth - 1 or (layer == 0 and not keep_shallow)):
        x, shallow = x[:, shallow:], 0
    final = lambda t: self.ssf(p, "final", layer_norm(t, p["norm"]))
    feature = final(x[:, 0])
    if "vqt" in self.names:
      tokens = [feature] + [final(q[:, i]) for q in queries for i in range(q.shape[1])]
      pooled = sum(w * t for w, t in zip(p["vqt_combine"], tokens))
      feature = (1 - self.mf) * feature + self.mf * pooled
    return dense(feature, p["head"])
