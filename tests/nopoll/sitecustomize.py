"""Remove ``select.poll`` at interpreter start-up, as on Windows, when
``EVENTSTREAM_TEST_NO_POLL=1``.

``tests/conftest.py`` puts this directory on ``PYTHONPATH`` in that mode, so that the
interpreters the tests start (the CLI, the examples) lack ``poll`` too.
"""

import os
import select

if os.environ.get("EVENTSTREAM_TEST_NO_POLL") == "1" and hasattr(select, "poll"):
    del select.poll
