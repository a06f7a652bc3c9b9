import sys

from odstack.labelling.app import main

sys.exit(main())
