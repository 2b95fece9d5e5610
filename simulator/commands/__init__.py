"""Sub-command modules. Each module here registers its commands on ``moesim.simulator.cli.app`` when imported;
``moesim.simulator.cli`` imports every module in this package, so adding a command is one new file."""
