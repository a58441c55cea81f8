"""One module per command or command group; ``cli.app`` registers them."""
