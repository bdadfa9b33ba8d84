"""Fine-tuning with TRL's SFTTrainer and PEFT (LoRA, QLoRA, DoRA), locally or under torchrun."""
