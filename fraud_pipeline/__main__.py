"""``python -m fraud_pipeline``: the command line (see :mod:`fraud_pipeline.cli.main`)."""

import sys

from fraud_pipeline.cli.main import main

sys.exit(main())
