"""The MCP server: Interactive Brokers tools for AI assistants (see server.py and README.md)."""
