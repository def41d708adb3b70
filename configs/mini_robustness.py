"""The offline robustness study: fine-tune the shipped mini backbone from its zero-shot head on `mini_shapes`,
score the in-distribution test and four shifted test sets, then WiSE-FT (`python -m jpeft.wise`).

The stand-in for the study's CLIP / ImageNet experiment (spec: "Many-shot and robustness"): the backbone's
upstream classifier, mapped to mini_shapes' six classes (`head_init='upstream'`), plays CLIP's text head; the
shifted sets (`jpeft/data/mini/shapes.py`: unseen backdrops, pale colours, sketches of 4 of the 6 shapes,
corruptions) play ImageNet-V2 / -Sketch / -A / -R. Pass the method after the file name:

  python -m jpeft.main --config=configs/mini_robustness.py:lora --workdir=runs/robustness_mini/lora
  python -m jpeft.wise --workdir=runs/robustness_mini/lora

Full fine-tuning trains at a 10x lower learning rate than the PEFT methods (as the study's full-FT rows use
lower rates); nothing here is tuned. Results and commands: experiments/results/robustness_mini/.
"""
from jpeft import config_base, peft

SHIFT_TASKS = ("mini_shapes_backdrop", "mini_shapes_colour", "mini_shapes_sketch", "mini_shapes_corrupt")
_LR = {"full": 1e-3}  # other methods: 1e-2, the demo's


def get_config(method: str = "lora"):
  config = config_base.demo_config()
  config.method = method
  config.peft = {name: peft.default_hparams(name) for name in method.split("+") if name in peft.registry()}
  if "lora" in config.peft:
    config.peft.lora.dropout = 0.0
  config.task = "mini_shapes"
  config.head_init = "upstream"
  config.shift_tasks = SHIFT_TASKS
  config.compare_methods = ()
  config.optim.lr = _LR.get(method, 1e-2)
  config.optim.epochs = 20
  config.optim.warmup_epochs = 2
  config.eval_every_epochs = 20
  config.checkpoint_every_epochs = 20
  return config
