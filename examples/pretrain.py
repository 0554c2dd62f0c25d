"""Pretrain GeoMeld-FM: a thin wrapper over `geomeld pretrain` (see `python examples/pretrain.py --help`)."""

import sys

from modeling_geomeld.cli import main

if __name__ == "__main__":
    sys.exit(main(["pretrain", *sys.argv[1:]]))
