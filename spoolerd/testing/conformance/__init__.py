"""The store conformance suite: import it into one test module of yours to run it,
``from spoolerd.testing.conformance import *`` (with the fixtures of ``spoolerd.testing.plugin``)."""

from .claims import *  # noqa: F403
from .dsn import *  # noqa: F403
from .durability import *  # noqa: F403
from .inbound_events import *  # noqa: F403
from .leases import *  # noqa: F403
from .lines import *  # noqa: F403
from .messages import *  # noqa: F403
from .outbox import *  # noqa: F403
from .outcomes import *  # noqa: F403
from .postpone import *  # noqa: F403
from .queue import *  # noqa: F403
from .retention import *  # noqa: F403
from .shared_state import *  # noqa: F403
from .submit_new import *  # noqa: F403
from .transport_state import *  # noqa: F403
