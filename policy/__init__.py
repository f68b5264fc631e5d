"""The curator policy (a llama.cpp GGUF model that writes memory through the tools).

Built by the curator issue. It depends on nothing of `mcp_memalpha`: it is handed the tool
specs and an `execute(name, arguments)` callable (see `mcp_memalpha.tools.execute`).
"""
