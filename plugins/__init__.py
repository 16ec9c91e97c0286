"""First-party plugins, registered through the `aitrados` entry-point group."""
