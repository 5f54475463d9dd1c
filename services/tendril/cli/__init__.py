"""The `tendril` command line: one argparse group per area, each registering itself."""
