#!/usr/bin/env python3
"""Creates the fixture organizations, users and courses (idempotently) and prints their ids.

Usage: scripts/seed.py [--json]   (the same as `jobctl seed`)
"""

import sys

from jobs.cli import main

if __name__ == "__main__":
    sys.exit(main(["seed", *sys.argv[1:]]))
