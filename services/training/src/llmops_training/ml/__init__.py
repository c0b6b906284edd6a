"""The machine-learning core of the training service: tiny models, fine-tuning (full, LoRA, QLoRA), generation.

Heavy libraries (torch, transformers, peft, TRL) are imported inside the functions of the submodules, so importing
this package stays cheap.
"""
