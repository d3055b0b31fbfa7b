"""`python -m harness`: the nanochat-bench command line."""
import sys

from harness.cli import main

sys.exit(main())
