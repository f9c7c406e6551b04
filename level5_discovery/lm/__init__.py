"""The hypothesis language model: tokenizer, tiny GPT-2, pretraining, LoRA, constrained decoding."""
