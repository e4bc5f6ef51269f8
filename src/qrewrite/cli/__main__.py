import sys

from qrewrite.cli.main import main

sys.exit(main())
