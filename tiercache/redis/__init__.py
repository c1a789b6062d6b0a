"""Everything that speaks Redis: connection, envelope, scripts, the tier, key versions, the bus."""

from .bus import Bus
from .tier import DEFAULT_TIMEOUT, RedisTier
from .versions import DELETED_VERSION_TTL, KeyVersions

__all__ = ["DEFAULT_TIMEOUT", "DELETED_VERSION_TTL", "Bus", "KeyVersions", "RedisTier"]
