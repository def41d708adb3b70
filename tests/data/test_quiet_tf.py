"""TensorFlow's import-time INFO lines stay out of jpeft's output; its warnings and errors do not."""
import os
import re
import subprocess
import sys

import pytest

from jpeft.data import quiet_tf

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
QUIET_TF = os.path.join(REPO, 'jpeft', 'data', 'quiet_tf.py')
START_UP_LINE = re.compile(r'absl::InitializeLog|^I\d{4} |oneDNN custom operations|cpu_feature_guard',
                           re.M)

# What TensorFlow 2.21's import wrote on a CPU machine, plus lines that must survive.
INFO = (b'WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n'
        b'I0000 00:00:1795982787.434597   11255 port.cc:153] oneDNN custom operations are on.\n')
KEPT = (b'W1129 20:09:26.539652 140109188184960 file_utils.py:394] a real warning\n'
        b'E0000 00:00:1795982787.595977   11255 cuda_dnn.cc:8310] a real error\n'
        b'UserWarning: written by Python during the import\n')
# A stand-in `tensorflow` package that writes both kinds of lines to file descriptor 2, from C
# level (os.write) and from Python (sys.stderr), as the real one does while importing.
FAKE_TF = (f'import os, sys\nos.write(2, {INFO[:90]!r})\nos.write(2, {INFO[90:] + KEPT[:60]!r})\n'
           f'sys.stderr.write({KEPT[60:].decode()!r})\n')


def _env(**overrides):
  env = {k: v for k, v in os.environ.items() if k != 'TF_CPP_MIN_LOG_LEVEL'}
  env.update(PYTHONPATH=REPO, **overrides)
  return env


def _import_fake_tf(tmp_path, **env):
  (tmp_path / 'tensorflow').mkdir()
  (tmp_path / 'tensorflow' / '__init__.py').write_text(FAKE_TF)
  # Loads quiet_tf.py alone: the jpeft.data package would import the real TFDS on top.
  script = ('import importlib.util, os, sys\n'
            f'spec = importlib.util.spec_from_file_location("quiet_tf", {QUIET_TF!r})\n'
            'module = importlib.util.module_from_spec(spec); spec.loader.exec_module(module)\n'
            'module.import_tensorflow()\n'
            'print(os.environ["TF_CPP_MIN_LOG_LEVEL"], sys.modules["tensorflow"].__file__)\n')
  env = _env(**env)
  env['PYTHONPATH'] = f'{tmp_path}{os.pathsep}{REPO}'
  return subprocess.run([sys.executable, '-c', script], env=env, capture_output=True, timeout=120)


def test_import_drops_info_lines_and_keeps_the_rest(tmp_path):
  proc = _import_fake_tf(tmp_path)
  assert proc.returncode == 0, proc.stderr.decode()
  assert proc.stderr == KEPT
  level, imported = proc.stdout.decode().split()
  assert level == '1' and imported.startswith(str(tmp_path))


def test_level_zero_keeps_everything(tmp_path):
  proc = _import_fake_tf(tmp_path, TF_CPP_MIN_LOG_LEVEL='0')
  assert proc.returncode == 0 and proc.stderr == INFO + KEPT


def test_drop_info_lines():
  assert quiet_tf.drop_info_lines(INFO + KEPT + INFO) == KEPT
  assert quiet_tf.drop_info_lines(b'') == b''


def test_jpeft_command_prints_no_tensorflow_start_up_lines():
  plain = subprocess.run([sys.executable, '-c', 'import tensorflow'], env=_env(), cwd=REPO,
                         capture_output=True, text=True, timeout=300)
  if not START_UP_LINE.search(plain.stderr):  # The lines this test guards against.
    pytest.skip('This TensorFlow build prints no start-up lines: nothing to hide.')
  proc = subprocess.run([sys.executable, '-m', 'jpeft.main', '--help'], env=_env(), cwd=REPO,
                        capture_output=True, text=True, timeout=300)
  assert 'Trains and evaluates one PEFT run' in proc.stdout, proc.stderr
  assert not START_UP_LINE.search(proc.stderr), proc.stderr
