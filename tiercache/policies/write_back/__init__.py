"""WriteBack: the tiers at once, the store later, in coalesced batches.

With a Redis tier the pending writes live in Redis (a journal hash, one
field per key, so several writes to a key coalesce into the last), written
in the same atomic step as the cached copy: a process killed after ``set``
returned loses nothing, and the next flush by any process that declares the
namespace writes it. Flushes take a lease in Redis so two processes do not
write one key's entries out of order, and acknowledge an entry only if it
is unchanged since it was read, so a write that lands during a flush stays
pending. A store that keeps failing sends an entry, after ``max_attempts``,
to a dead-letter hash that code can inspect and replay.

Without a Redis tier the journal is a dict in the process: fast, and lost
with the process. That is the documented price of write-back without Redis.

:class:`WriteBack` is the frozen configuration; each namespace's
:class:`WriteBackJournal` holds the runtime state; :mod:`.flusher` writes
the journal to the store.
"""

from .journal import WriteBackJournal
from .policy import WriteBack

__all__ = ["WriteBack", "WriteBackJournal"]
