"""Reinforcement learning of the curator (GRPO with TRL), evaluation and GGUF export.

Built by the training issue, over the same tool definitions (`mcp_memalpha.tools`).
"""
