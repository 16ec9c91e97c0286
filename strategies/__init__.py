"""First-party strategy plugins, registered through the `aitrados` entry-point group."""
