"""``python -m mmjax.cli ...`` runs the ``mmjax`` command."""

import sys

from mmjax.cli.app import main

sys.exit(main())
