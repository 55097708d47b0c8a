"""One module per command: a frozen dataclass of its options (`Options`) and `run(options)`.

`polybot.cli` parses the command line, builds the command's `Options` from the parsed namespace
(by the dataclass's fields), imports the module lazily and calls `run`. The work itself happens in
the library modules; a command module only wires options to them.
"""
