"""The ``shipyard`` command: parse arguments, call the pillars, render the result."""
