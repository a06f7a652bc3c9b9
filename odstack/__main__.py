import sys

from odstack.cli import main

sys.exit(main())
