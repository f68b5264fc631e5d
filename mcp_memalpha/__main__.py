from mcp_memalpha.cli import main

main()
