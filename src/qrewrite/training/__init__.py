"""Training: datasets, the tokenizer and small model, domain pretraining, SFT, rewards and GRPO."""
