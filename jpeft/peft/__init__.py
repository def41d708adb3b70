"""Parameter-efficient fine-tuning methods for the ViT of `jpeft.models.vit`.

  methods = build_methods(config.method, config.peft)        # 'lora+bitfit' -> (LoRA(...), BitFit())
  model = create_model('B/16', num_classes=100, methods=methods)
  labels = partition.label_params(params, methods)           # {path: 'head' | 'peft' | 'peft_b' | 'backbone' | 'frozen'}
  trainable, frozen = partition.split(params, labels)        # only `trainable` is differentiated
  print(summary(params, labels))
  plain = merge(params, methods)                             # re-parameterisable methods -> plain ViT weights
"""
from jpeft.peft import methods as _methods  # registers every method  # noqa: F401
from jpeft.peft.base import BACKBONE, FROZEN, HEAD, PEFT, PEFT_B, Method, registry
from jpeft.peft.build import build_methods, default_hparams, methods_config
from jpeft.peft.report import count_params, summary
from jpeft.peft.reparam import merge
