"""The sweep's record: torn and corrupt lines of trials.jsonl, rows of another config, and a rerun of a workdir
under another base config (refused) or a wider grid (resumed)."""
import hashlib
import json
import os
import re
import shutil

import numpy as np
import pytest

from .conftest import BACKBONE, load_config, tiny_overrides
from jpeft import config_base, peft
from jpeft.sweep import grid, protocol, trial_log
from jpeft.train.errors import ConfigError

HASH = "0123456789ab"


def _rows(n, config_hash=HASH):
  return [{"stage": "tune", "key": f"k{i}", "accuracy": i / 10, "sweep_config": config_hash} for i in range(n)]


def _write(path, lines):
  path.write_text("".join(line + "\n" for line in lines))


def test_torn_last_line_is_dropped_and_appending_continues(tmp_path):
  path = tmp_path / "trials.jsonl"
  path.write_text("".join(json.dumps(r) + "\n" for r in _rows(2)) + '{"stage": "tune", "key": "k2", "acc')
  log = trial_log.TrialLog(str(path), lambda row: HASH)
  assert set(log.rows) == {("tune", "k0"), ("tune", "k1")}
  log.append([dict(stage="final", key="k0", accuracy=0.3)])
  reread = trial_log.TrialLog(str(path), lambda row: HASH)
  assert reread.rows[("final", "k0")]["accuracy"] == 0.3
  assert reread.rows[("final", "k0")]["sweep_config"] == HASH  # appended rows carry the config's hash


@pytest.mark.parametrize("bad", ['{"stage": "tune", "key": "k1", "accur#@!' + "x" * 200, "[1, 2]",
                                 '{"accuracy": 0.5}'])
def test_corrupt_middle_line_is_named_and_the_file_kept(tmp_path, bad):
  path = tmp_path / "trials.jsonl"
  good = [json.dumps(r) for r in _rows(3)]
  _write(path, [good[0], bad, good[2]])
  before = path.read_bytes()
  with pytest.raises(trial_log.TrialLogError) as error:
    trial_log.TrialLog(str(path), lambda row: HASH)
  message = str(error.value)
  assert f"Line 2 of '{path}' is not a trial record" in message
  assert repr(bad[:80] + "...") in message if len(bad) > 80 else repr(bad) in message
  assert "Delete that line" in message
  assert path.read_bytes() == before


@pytest.mark.parametrize("other,made", [("fedcba987654", "under another sweep config (hash fedcba987654)"),
                                        (None, "without a recorded sweep config")])
def test_rows_of_another_config_are_refused(tmp_path, other, made):
  path = tmp_path / "trials.jsonl"
  rows = _rows(4)
  for row in rows[1:3]:
    row["sweep_config"] = other
  _write(path, [json.dumps(r) for r in rows])
  with pytest.raises(trial_log.TrialLogError, match=re.escape(f"Line 2 of '{path}' and 1 more was made {made}")):
    trial_log.TrialLog(str(path), lambda row: HASH)


def _tiny_grid(lrs, final_seeds=()):
  return config_base.apply_overrides(grid.default_grid(),
                              {"lr": lrs, "wd": (1e-4,), "seeds": (42,), "final_seeds": final_seeds})


def _sweep(config, workdir, lrs=(1e-2,), log=lambda message: None, final=False, final_seeds=()):
  return protocol.run_sweep(config, ["dtd"], ["linear"], _tiny_grid(lrs, final_seeds), workdir, 2, final=final,
                            log=log)


def test_more_final_seeds_retrain_the_same_setting_and_keep_the_first(folder_root, tmp_path):
  """A rerun with --grid.final_seeds adds final trainings of the selected setting: no tune trial, the seed-42
  final untouched, a test spread and one predictions file per seed (the seed control of jpeft.analysis)."""
  workdir = str(tmp_path)
  config = load_config(tiny_overrides(folder_root))
  (first,) = _sweep(config, workdir, lrs=(1e-2, 1e-3), final=True)
  rows = open(os.path.join(workdir, trial_log.TRIALS_FILE)).read()
  messages = []
  (more,) = _sweep(config, workdir, lrs=(1e-2, 1e-3), final=True, final_seeds=(42, 43), log=messages.append)
  assert "2 already finished, training 0" in messages[0] and "x 2 seeds, training 1" in messages[1]
  assert more["selected"] == first["selected"] and more["val_accuracy"] == first["val_accuracy"]
  assert first["seeds"] == [42] and more["seeds"] == [42, 43]
  finals = [json.loads(line) for line in open(os.path.join(workdir, trial_log.TRIALS_FILE))
            if json.loads(line)["stage"] == "final"]
  assert [r["seed"] for r in finals] == [42, 43] and open(os.path.join(workdir, trial_log.TRIALS_FILE)).read()[
      :len(rows)] == rows
  assert more["test_accuracy"] == pytest.approx((finals[0]["accuracy"] + finals[1]["accuracy"]) / 2)
  for seed in (42, 43):
    assert os.path.exists(protocol.predictions_path(workdir, "dtd", "linear", seed))


def test_rerun_under_another_config_is_refused_and_a_wider_grid_resumes(folder_root, tmp_path):
  workdir = str(tmp_path)
  trials_path = os.path.join(workdir, trial_log.TRIALS_FILE)
  config_path = os.path.join(workdir, trial_log.SWEEP_CONFIG_FILE)
  config = load_config(tiny_overrides(folder_root))
  _sweep(config, workdir)
  with open(config_path) as f:
    recorded = json.load(f)["values"]
  assert recorded["optim.epochs"] == 2 and recorded["model.variant"] == "mu/8"
  assert recorded["peft.lora.dropout"] == peft.default_hparams("lora")["dropout"]
  assert not {"optim.lr", "optim.wd", "task", "method", "peft.lora.rank"} & set(recorded)  # set per trial
  rows = open(trials_path).read()

  other = load_config(dict(tiny_overrides(folder_root), **{"optim.epochs": 1, "pretrained.path": ""}))
  with pytest.raises(ConfigError) as error:
    _sweep(other, workdir)
  assert "optim.epochs = 2 there, 1 here" in str(error.value)
  assert "pretrained.path" in str(error.value) and "--workdir" in str(error.value)
  assert open(trials_path).read() == rows

  # Widening: another lr. The base config's own lr and LoRA rank (each trial sets its own) and a peft block
  # spelled out as configs/vtab_lora.py writes it do not make another sweep.
  same = load_config(dict(tiny_overrides(folder_root), **{"optim.lr": 0.5}))
  same.peft.lora = dict(peft.default_hparams("lora"), rank=32)
  messages = []
  _sweep(same, workdir, lrs=(1e-2, 1e-3), log=messages.append)
  assert "1 already finished, training 1" in messages[0]
  after = open(trials_path).read()
  assert after.startswith(rows) and len(after.splitlines()) == 2

  # With sweep_config.json deleted, the rows' hash still keeps another config out ...
  os.remove(config_path)
  with pytest.raises(trial_log.TrialLogError, match="Line 1 of .* and 1 more was made under another sweep"):
    _sweep(other, workdir)
  assert not os.path.exists(config_path)
  # ... and the same config resumes (nothing to train) and records itself again.
  messages.clear()
  _sweep(config, workdir, lrs=(1e-2, 1e-3), log=messages.append)
  assert "2 already finished, training 0" in messages[0]
  with open(config_path) as f:
    assert json.load(f)["values"] == recorded
  assert open(trials_path).read() == after


def test_a_newly_registered_method_leaves_recorded_sweeps_valid(folder_root, tmp_path):
  """A sweep recorded before a method existed (its values and rows lack that method's hyperparameters) resumes:
  the row hash covers only the row's own methods. Another value of the row's own method is still refused."""
  config = load_config(tiny_overrides(folder_root))
  values = trial_log.sweep_defining_values(config)
  older = {k: v for k, v in values.items() if not k.startswith("peft.lora.")}  # as if lora were registered later
  (tmp_path / trial_log.SWEEP_CONFIG_FILE).write_text(json.dumps(dict(hash="old", values=older)))
  row = dict(stage="tune", key="k0", method="linear", accuracy=0.5,
             sweep_config=trial_log.method_hash(older, "linear"))
  _write(tmp_path / trial_log.TRIALS_FILE, [json.dumps(row)])
  log = trial_log.open_log(config, str(tmp_path))
  assert set(log.rows) == {("tune", "k0")}
  assert trial_log.method_hash(values, "lora") != trial_log.method_hash(older, "lora")

  lora_row = dict(row, key="k1", method="lora+bitfit", sweep_config=trial_log.method_hash(values, "lora+bitfit"))
  _write(tmp_path / trial_log.TRIALS_FILE, [json.dumps(lora_row)])
  changed = load_config(tiny_overrides(folder_root))
  changed.peft.lora = dict(peft.default_hparams("lora"), dropout=0.3)
  (tmp_path / trial_log.SWEEP_CONFIG_FILE).unlink()
  with pytest.raises(trial_log.TrialLogError, match="Line 1 of .* was made under another sweep config"):
    trial_log.open_log(changed, str(tmp_path))


def test_a_changed_backbone_file_at_the_same_path_is_refused(folder_root, tmp_path, capsys):
  """The backbone is named by its path in the config; its bytes are recorded too, so a rerun after the file
  changed (a new jpeft's mini backbone at the same path) does not mix trials of two backbones."""
  backbone = tmp_path / "backbone.npz"
  shutil.copy(BACKBONE, backbone)
  config = load_config(dict(tiny_overrides(folder_root), **{"pretrained.path": str(backbone)}))
  workdir = str(tmp_path / "sweep")
  os.makedirs(workdir)
  trial_log.open_log(config, workdir)
  recorded = json.loads((tmp_path / "sweep" / trial_log.SWEEP_CONFIG_FILE).read_text())
  assert recorded[trial_log.PRETRAINED_DIGEST_FIELD] == hashlib.sha256(backbone.read_bytes()).hexdigest()
  trial_log.open_log(config, workdir)  # same file: resumes

  arrays = dict(np.load(backbone))
  arrays["cls"] = arrays["cls"] + 1.0  # another backbone, same path and shapes
  np.savez(backbone, **arrays)
  with pytest.raises(ConfigError, match=r"trials made from the pretrained checkpoint .*backbone.npz.* when its "
                     r"SHA-256 was [0-9a-f]{16}\.\.\., but the file there now hashes to [0-9a-f]{16}"):
    trial_log.open_log(config, workdir)
  assert json.loads((tmp_path / "sweep" / trial_log.SWEEP_CONFIG_FILE).read_text()) == recorded  # untouched

  # A sweep recorded before digests existed resumes, warned when the file is newer, and is guarded from then on.
  del recorded[trial_log.PRETRAINED_DIGEST_FIELD]
  record_file = tmp_path / "sweep" / trial_log.SWEEP_CONFIG_FILE
  record_file.write_text(json.dumps(recorded))
  os.utime(backbone, (record_file.stat().st_mtime + 60,) * 2)
  trial_log.open_log(config, workdir)
  assert re.search(r"warning: the sweep in .* was recorded before .*backbone.npz' was modified after that",
                   capsys.readouterr().err)
  now = json.loads((tmp_path / "sweep" / trial_log.SWEEP_CONFIG_FILE).read_text())
  assert now == dict(recorded, **{trial_log.PRETRAINED_DIGEST_FIELD: hashlib.sha256(backbone.read_bytes()).hexdigest()})


def test_a_sweep_refuses_init_from_before_writing_anything(folder_root, tmp_path):
  config = load_config(dict(tiny_overrides(folder_root), **{"init_from.workdir": str(tmp_path / "some_run")}))
  workdir = tmp_path / "sweep"
  with pytest.raises(ConfigError, match="'init_from.workdir' .* is not supported by sweeps"):
    _sweep(config, str(workdir))
  assert not workdir.exists()


def test_a_sweep_refuses_early_stopping_before_writing_anything(folder_root, tmp_path):
  config = load_config(dict(tiny_overrides(folder_root), **{"early_stopping.patience": 3}))
  workdir = tmp_path / "sweep"
  with pytest.raises(ConfigError, match="'early_stopping.patience' = 3 is not supported by sweeps"):
    _sweep(config, str(workdir))
  assert not workdir.exists()


def test_fields_added_by_the_zoo_keep_recorded_sweep_hashes_at_their_defaults(folder_root):
  """LoRA's scaling / alpha / init, Adapter+'s options and LoRA+'s lr_mult.peft_b drop out of the sweep's values
  at their defaults (sweeps recorded before them keep their hash) and count when set."""
  added = ("optim.lr_mult.peft_b", "peft.lora.scaling", "peft.lora.alpha", "peft.lora.init", "peft.adapter.init",
           "peft.adapter.nonlinearity", "peft.adapter.drop_path")
  config = load_config(tiny_overrides(folder_root))
  assert not set(added) & set(trial_log.sweep_defining_values(config))
  config.optim.lr_mult.peft_b = 16.0
  config.peft.lora = dict(peft.default_hparams("lora"), init="pissa")
  values = trial_log.sweep_defining_values(config)
  assert values["optim.lr_mult.peft_b"] == 16.0 and values["peft.lora.init"] == "pissa"
