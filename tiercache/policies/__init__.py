"""Write policies: the order of store and tier writes."""

from .base import Target, WriteBatch, WritePolicy
from .write_through import WriteThrough

__all__ = ["Target", "WriteBatch", "WritePolicy", "WriteThrough"]
