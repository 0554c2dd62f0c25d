"""Fine-tune GeoMeld-FM: a thin wrapper over `geomeld finetune` (see `python examples/finetune.py --help`)."""

import sys

from modeling_geomeld.cli import main

if __name__ == "__main__":
    sys.exit(main(["finetune", *sys.argv[1:]]))
