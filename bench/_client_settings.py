"""netops settings for a bench process that is itself a websocket *client* (``bench/chat_streaming.py``).

The ``daphne`` app (it only adds daphne's ``runserver``) imports autobahn's Twisted flavour, which pins
txaio to Twisted for the whole process; the bench's websocket client is autobahn's asyncio flavour,
which needs txaio on asyncio. The bench process uses the ORM and the test client only; the daphne
process it measures runs with the unchanged ``netops.settings``.
"""

from netops.settings import *  # noqa: F403
from netops.settings import INSTALLED_APPS as _INSTALLED_APPS

INSTALLED_APPS = [app for app in _INSTALLED_APPS if app != "daphne"]
