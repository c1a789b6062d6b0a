"""WriteBack: the tiers at once, the store later, in coalesced batches."""

from .journal import WriteBackJournal
from .policy import WriteBack

__all__ = ["WriteBack", "WriteBackJournal"]
