"""Command-line interface: parses options and calls library functions; nothing else lives here."""
