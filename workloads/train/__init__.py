"""Fine-tuning with TRL's SFTTrainer and PEFT (LoRA, QLoRA, DoRA), locally or under torchrun."""

from workloads.train.config import TrainConfig, load_train_config
from workloads.train.trainer import TrainResult, run_training

__all__ = ["TrainConfig", "TrainResult", "load_train_config", "run_training"]
