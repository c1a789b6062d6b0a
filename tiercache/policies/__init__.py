"""Write policies: the order of store and tier writes."""

from .base import Target, WriteBatch, WritePolicy
from .write_around import WriteAround
from .write_back import WriteBack
from .write_through import WriteThrough

__all__ = ["Target", "WriteAround", "WriteBack", "WriteBatch", "WritePolicy", "WriteThrough"]
