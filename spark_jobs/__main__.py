"""`python -m spark_jobs JOB --ds YYYY-MM-DD --lake LAKE [options]`."""

import sys

from spark_jobs.cli import main

sys.exit(main())
