"""The README's first command, shortened: configs/demo.py through the real CLI, offline, on the CPU."""
import json
import os
import subprocess
import sys

import jpeft

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_demo_config_runs_lora_beside_linear_on_the_shipped_backbone(tmp_path):
  workdir = tmp_path / 'demo'
  cmd = [sys.executable, '-m', 'jpeft.main', '--config=configs/demo.py', f'--workdir={workdir}',
         f'--config.data.data_dir={tmp_path / "tfds"}', '--config.optim.epochs=2',
         '--config.optim.warmup_epochs=0', '--config.eval_every_epochs=2',
         '--config.checkpoint_every_epochs=2']
  # No network: the Mini VTAB task is generated locally and the backbone is a package file.
  env = dict(os.environ, JAX_PLATFORMS='cpu', NO_PROXY='*', HTTPS_PROXY='http://0.0.0.0:9',
             HTTP_PROXY='http://0.0.0.0:9')
  proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, env=env, timeout=600)
  assert proc.returncode == 0, proc.stderr[-3000:]

  result = json.loads((workdir / 'result.json').read_text())
  assert (result['task'], result['method'], result['mode'], result['eval_split']) == (
      'mini_count', 'lora', 'final', 'test')
  assert result['pretrained'] == os.path.join(os.path.dirname(jpeft.__file__), 'assets', 'mini-ViT_8.npz')
  # LoRA rank 8 on the fused qkv of 6 blocks of width 128, plus the 8-way head.
  assert result['trainable_params'] == 6 * (128 * 8 + 8 * 3 * 128) + 128 * 8 + 8
  assert result['accuracy'] > 1.5 / 8  # two epochs from the pretrained backbone: clearly above chance

  # Linear probing beside it (config.compare_methods), printed on one line with the LoRA accuracy.
  linear = json.loads((workdir / 'linear' / 'result.json').read_text())
  assert (linear['method'], linear['eval_split'], linear['trainable_params']) == ('linear', 'test', 128 * 8 + 8)
  # The console is short: the accuracies, where the records are, the compilation count (no result.json dump),
  # and TFDS's warning about the not-yet-generated task's missing dataset_info.json is gone.
  # (Before them, on a task's first use only, TFDS's two lines about preparing the generated task.)
  lines = proc.stdout.splitlines()
  assert lines[-3:-1] == [
      f"mini_count test accuracy: lora {result['accuracy']:.3f} | linear {linear['accuracy']:.3f}",
      f"results: {workdir / 'result.json'}, {workdir / 'linear' / 'result.json'}"]
  assert lines[-1].startswith("compilation: ") and len(lines) <= 5
  assert "dataset_info.json" not in proc.stderr
