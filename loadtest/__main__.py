import sys

from loadtest.fleet import main

sys.exit(main())
