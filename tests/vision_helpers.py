"""Shared by the vision tests: the `[model]` table of the tiny vision-language model
(a 32-wide one-layer Qwen2-VL with a 16-wide vision tower) that their run configs use."""

TINY_VLM_MODEL = """[model]
hidden_size = 32
num_layers = 1
num_heads = 2
intermediate_size = 64
max_positions = 128
vision_dim = 16
"""
