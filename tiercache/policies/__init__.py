"""Write policies: the order of store and tier writes."""

from .base import (
    DeadLetters,
    PolicyRun,
    Target,
    WriteBatch,
    WriteContext,
    WriteOutcome,
    WritePolicy,
)
from .write_around import WriteAround
from .write_back import WriteBack, WriteBackJournal
from .write_through import WriteThrough

__all__ = [
    "DeadLetters",
    "PolicyRun",
    "Target",
    "WriteAround",
    "WriteBack",
    "WriteBackJournal",
    "WriteBatch",
    "WriteContext",
    "WriteOutcome",
    "WritePolicy",
    "WriteThrough",
]
