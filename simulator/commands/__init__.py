"""Sub-command modules. Each module here registers its commands on ``simulator.cli.app`` when imported;
``simulator.cli`` imports every module in this package, so adding a command is one new file."""
