"""tiercache: an in-process LRU, Redis and your database behind one interface."""

from importlib.metadata import PackageNotFoundError, version

from ._types import MISSING, Key
from .aio import AsyncCache, AsyncNamespace
from .cache import Cache
from .errors import (
    CapacityError,
    ConfigurationError,
    InvalidKeyError,
    SerializationError,
    StoreError,
    TiercacheError,
    TierError,
    TierUnavailable,
    ValueTooLargeError,
)
from .invalidation import TTL, Invalidation, Purge, Versioned
from .namespace import Namespace
from .policies import WriteAround, WriteBack, WritePolicy, WriteThrough
from .redis import RedisTier
from .scheduler import Scheduler, ThreadScheduler
from .serialization import JSONSerializer, MsgpackSerializer, PickleSerializer, Serializer
from .stores import FunctionStore, MappingStore, SQLiteStore, SQLStore, Store
from .tiers import MemoryTier, Tier

try:
    __version__ = version("tiercache")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0+unknown"

__all__ = [
    "MISSING",
    "TTL",
    "AsyncCache",
    "AsyncNamespace",
    "Cache",
    "CapacityError",
    "ConfigurationError",
    "FunctionStore",
    "InvalidKeyError",
    "Invalidation",
    "JSONSerializer",
    "Key",
    "MappingStore",
    "MemoryTier",
    "MsgpackSerializer",
    "Namespace",
    "PickleSerializer",
    "Purge",
    "RedisTier",
    "SQLStore",
    "SQLiteStore",
    "Scheduler",
    "SerializationError",
    "Serializer",
    "Store",
    "StoreError",
    "ThreadScheduler",
    "Tier",
    "TierError",
    "TierUnavailable",
    "TiercacheError",
    "ValueTooLargeError",
    "Versioned",
    "WriteAround",
    "WriteBack",
    "WritePolicy",
    "WriteThrough",
]
