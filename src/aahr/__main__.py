import sys

from aahr.cli import main

sys.exit(main())
