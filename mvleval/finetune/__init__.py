"""The LoRA fine-tuning module: config, training data, the training recipe, and export to a merged 4/8/16/32-bit checkpoint.

Entry points (none imports torch at import time)::

    config = load_config(config_file, ["lr_lora=1e-4"], base_model=..., output_dir=..., train_file=..., image_roots=[...])
    out_dir = train(config, resume=False, progress=None)     # -> folder usable as `mvleval run --adapter DIR`
    export(out_dir, Path("merged-4bit"), bits=4)             # -> folder usable as `mvleval run --model DIR`
"""

from mvleval.finetune.config import TrainConfig, load_config
from mvleval.finetune.export import export
from mvleval.finetune.loop import TrainProgress
from mvleval.finetune.train import train

__all__ = ["TrainConfig", "TrainProgress", "export", "load_config", "train"]
