"""The SMTP transport plugin (entry point ``smtp``): relays through a smarthost with aiosmtplib."""

from .settings import SmtpSettings
from .transport import SmtpTransport

__all__ = ["SmtpSettings", "SmtpTransport"]
