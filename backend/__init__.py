"""Bulk Mailer's UI-agnostic core: settings, recipients, compose, transports, the send loop."""

__version__ = "0.1.0"
