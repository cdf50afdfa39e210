"""The account's own mailbox over IMAP: a copy of each sent message in Sent (sent.py), over
an encrypted, verified connection (imap.py)."""
